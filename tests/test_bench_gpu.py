"""``fpar bench gpu`` and the gpu-check script, on the CPU: the arithmetic (peaks, FLOPs,
MFU, batch search), the report of a tiny model stepped through the real engine, the bitwise
checkpoint comparison, the refusal without CUDA, and (slow) the whole check in fp32."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from launcher.benchmarks import gpu
from launcher.benchmarks.gpu import goals
from launcher.benchmarks.gpu_measure import (
    Variant,
    count_flops,
    largest_batch,
    mfu,
    parse_variants,
    peak_tflops,
    step_figures,
    waiting_fraction,
    workers_enough,
)
from launcher.benchmarks.gpu_steps import PAPER_CONFIG, fits_function
from launcher.checkpoint_compare import compare_checkpoints, compare_states

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.backbone=resnet18", "model.convlstm_hidden=8", "model.ms_hidden=4",
        "data.crop_size=32", "model.input_size=32", "data.num_frames=2",
        "model.num_classes={verb: 5, noun: 7}"]
needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")


# ------------------------------------------------------------------ arithmetic

def test_peak_is_looked_up_by_device_name_most_specific_first():
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == (989.4, "table: H100 dense bf16")
    assert peak_tflops("NVIDIA H100 PCIe", "fp16")[0] == 756.0
    assert peak_tflops("NVIDIA H200", "bf16")[0] == 989.4
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "fp16")[0] == 312.0
    assert peak_tflops("NVIDIA L40S", "bf16")[0] == 362.05
    assert peak_tflops("NVIDIA L4", "bf16")[0] == 121.0
    value, why = peak_tflops("Tesla V100-SXM2-32GB", "bf16")
    assert value is None and "no bf16" in why
    assert peak_tflops("Tesla V100-SXM2-32GB", "fp16")[0] == 125.0
    value, why = peak_tflops("Some New GPU", "bf16")
    assert value is None and "--peak-tflops" in why
    assert peak_tflops("Some New GPU", "bf16", override=500.0) == (500.0, "--peak-tflops")
    with pytest.raises(ValueError):
        peak_tflops("NVIDIA H100", "bf16", override=0.0)


def test_mfu_and_step_figures():
    assert mfu(2e12, 1.0, 10.0) == pytest.approx(0.2)
    assert mfu(1e12, 1.0, None) is None
    figures = step_figures([0.5, 0.4, 0.6], batch=8, flops_per_clip=1e12, peak=100.0)
    assert figures["step_s"] == 0.5 and figures["step_s_min"] == 0.4
    assert figures["clips_per_s"] == pytest.approx(16.0)
    assert figures["tflops_per_s"] == pytest.approx(16.0)
    assert figures["mfu"] == pytest.approx(0.16)


def test_flop_count_covers_forward_and_backward_of_a_linear_layer():
    layer = torch.nn.Linear(16, 8)
    x = torch.randn(4, 16)
    # forward 2*B*I*O; backward: the weight gradient, 2*B*I*O ...
    assert count_flops(lambda: layer(x).sum().backward()) == 2 * 2 * 4 * 16 * 8
    # ... and the input's, when it needs one
    x.requires_grad_()
    assert count_flops(lambda: layer(x).sum().backward()) == 3 * 2 * 4 * 16 * 8


def test_batch_search_doubles_then_bisects_to_the_largest_that_fits():
    calls = []

    def fits(batch):
        calls.append(batch)
        return batch <= 300

    found = largest_batch(fits, start=8, limit=4096, granularity=1)
    assert found.largest == 300 and found.first_failed == 301 and not found.capped
    assert calls[:7] == [8, 16, 32, 64, 128, 256, 512]  # doubling until the first failure
    assert all(256 < b < 512 for b in calls[7:])  # then bisection between them
    assert len(calls) <= 7 + 9
    coarse = largest_batch(lambda b: b <= 300, start=8, limit=4096, granularity=16)
    assert coarse.largest % 16 == 0 and 300 - 16 < coarse.largest <= 300
    capped = largest_batch(lambda b: True, start=8, limit=100)
    assert capped.largest == 100 and capped.capped and capped.tried[-1] == (100, True)
    below = largest_batch(lambda b: b <= 5, start=32)
    assert below.largest == 5 and below.first_failed == 6
    assert largest_batch(lambda b: False, start=4).largest == 0


class FakeStepper:
    """The part of EngineStep that fits_function uses; runs out of memory above ``room``."""

    def __init__(self, room: int, error=torch.OutOfMemoryError):
        from launcher.benchmarks.gpu_steps import experiment

        self.cfg = experiment(PAPER_CONFIG, TINY, Variant("fp32"), 2)
        self.device, self.room, self.error, self.cleared = torch.device("cpu"), room, error, 0

    def to_device(self, batch):
        return batch

    def step(self, batch):
        if batch["frames"].shape[0] > self.room:
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return 0.0

    def clear_grads(self):
        self.cleared += 1


def test_the_search_times_below_the_out_of_memory_edge():
    from launcher.benchmarks.gpu import timed_batch

    assert timed_batch(512, 576, 16) == 448
    assert timed_batch(16, 24, 16) == 14
    assert timed_batch(1, 2, 8) == 1
    assert timed_batch(1024, None, 16) == 1024  # capped by --max-batch: no edge was met


def test_fits_function_turns_out_of_memory_into_false_and_reraises_other_errors():
    stepper = FakeStepper(room=12)
    found = largest_batch(fits_function(stepper), start=2, limit=64)
    assert found.largest == 12 and found.first_failed == 13
    assert stepper.cleared == len(found.tried)  # gradients dropped after every try
    cudnn = FakeStepper(room=3, error=lambda m: RuntimeError("CUDNN_STATUS_ALLOC_FAILED"))
    assert fits_function(cudnn)(4) is False
    broken = FakeStepper(room=3, error=lambda m: RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        fits_function(broken)(4)


def test_variants_parse_and_bad_ones_are_refused():
    variants = parse_variants("bf16, fp16+cl ,bf16+cl+compile+z1")
    assert [v.name for v in variants] == ["bf16", "fp16+cl", "bf16+cl+compile+z1"]
    assert variants[2] == Variant("bf16", channels_last=True, compile=True, zero_stage=1)
    for bad, message in (("int8", "precision"), ("bf16+fast", "unknown part"),
                         ("bf16,bf16", "repeated"), (" , ", "no variants")):
        with pytest.raises(ValueError, match=message):
            parse_variants(bad)


def test_waiting_fraction_workers_and_goals():
    assert waiting_fraction([0.0, 0.1, 0.3], [1.0, 0.9, 0.7]) == pytest.approx(0.1)
    assert workers_enough({1: 0.5, 2: 0.2, 4: 0.04, 8: 0.01}, 0.05) == 4
    assert workers_enough({1: 0.5}, 0.05) is None
    assert gpu.worker_counts("auto", 6) == [1, 2, 4, 6]
    assert gpu.worker_counts("auto", 1) == [1]
    assert gpu.worker_counts("4,1,4", 16) == [1, 4]
    report = {"variants": {"bf16": {"clips_per_s": 800.0, "mfu": 0.15},
                           "fp16": {"clips_per_s": 2000.0, "mfu": 0.4}},
              "batch_search": {"bf16": {"at_timed_batch": {"clips_per_s": 1200.0, "mfu": 0.22}}},
              "loader": {"per_workers": {"1": {"waiting_fraction": 0.5},
                                         "8": {"waiting_fraction": 0.03}}}}
    out = goals(report, gpu.GOALS)
    assert out["clips_per_s"] == {"goal": 1000.0, "reached": 1200.0, "met": True}  # bf16 only
    assert out["mfu"]["reached"] == 0.22 and out["mfu"]["met"]
    assert out["waiting_fraction"] == {"goal": 0.05, "reached": 0.03, "met": True}
    assert goals({"variants": {}}, gpu.GOALS)["mfu"]["met"] is None


# ------------------------------------------------------------------ the real engine, tiny

@pytest.fixture
def lone_rank(monkeypatch):
    """One rank's environment, removed again after the test."""
    from fpar.engine.distributed import find_free_port

    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),
                       ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(find_free_port()))):
        monkeypatch.setenv(key, value)


def bench_args(*extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    gpu.add_arguments(parser)
    overrides = [a for o in TINY for a in ("--set", o)]
    return parser.parse_args([*overrides, "--batch-size", "2", "--warmup", "1", "--steps", "1",
                              "--search-start", "2", "--max-batch", "4", "--peak-tflops", "2",
                              "--no-loader", *extra])


def test_report_of_a_tiny_sparnet_through_the_engine_on_cpu(lone_rank):
    report = gpu.measure(bench_args("--variants", "bf16+cl"), torch.device("cpu"))
    assert report["benchmark"] == "gpu" and report["settings"]["backbone"] == "resnet18"
    assert report["flops"]["per_step"] == 2 * report["flops"]["per_clip"] > 0
    assert list(report["variants"]) == ["bf16+cl"]
    for v in report["variants"].values():
        assert "error" not in v, v
        assert v["clips_per_s"] == pytest.approx(2 / v["step_s"])
        assert v["mfu"] == pytest.approx(report["flops"]["per_step"] / v["step_s"] / 2e12)
        assert v["losses_finite"] and v["memory"] is None
    assert report["best_variant"] == "bf16+cl"
    search = report["batch_search"]["bf16"]
    assert search["variant"] == report["best_variant"]
    assert search["largest"] == 4 and search["capped_at_max_batch"]
    assert search["tried"] == [[2, True], [4, True]]
    assert search["timed_batch"] == 4  # capped, not out of memory: timed at the largest
    assert search["at_timed_batch"]["batch_size"] == 4 and "error" not in search["at_timed_batch"]
    assert report["loader"] == {"skipped": "--no-loader"}
    assert set(report["goals"]) == {"clips_per_s", "mfu", "waiting_fraction"}
    json.dumps(report)  # the one-line JSON output


def test_flops_of_a_sparnet_step_are_linear_in_the_batch():
    from fpar.data.batch import prepare_batch
    from fpar.models import build_model, compute_loss
    from launcher.benchmarks.gpu_steps import experiment, synthetic_batch

    cfg = experiment(PAPER_CONFIG, TINY, Variant("fp32"), 2)
    model = build_model(cfg.model)
    counts = []
    for batch in (1, 3):
        data = prepare_batch(synthetic_batch(cfg, batch, torch.device("cpu")), torch.device("cpu"))
        counts.append(count_flops(lambda: compute_loss(cfg.model, model(data), data)[0].backward()))
    assert counts[1] == 3 * counts[0] > 0


@needs_no_cuda
@pytest.mark.parametrize("command", [["-m", "launcher.cli", "bench", "gpu", "--json"],
                                     ["-m", "launcher.gpu_check"]])
def test_without_cuda_both_commands_say_so_and_exit_2(command):
    proc = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no CUDA device" in proc.stderr and proc.stdout == ""


# ------------------------------------------------------------------ checkpoint comparison

def test_compare_states_is_bitwise():
    a = {"module": {"w": torch.tensor([1.0, float("nan"), 0.0]), "n": torch.tensor(3)},
         "scaler": {"cur_scale": 1024.0}, "groups": [(torch.ones(2, dtype=torch.bfloat16),)]}
    same = {"module": {"w": torch.tensor([1.0, float("nan"), 0.0]), "n": torch.tensor(3)},
            "scaler": {"cur_scale": 1024.0}, "groups": [(torch.ones(2, dtype=torch.bfloat16),)]}
    assert compare_states(a, same) == []  # NaN equals the same NaN bit for bit
    b = {"module": {"w": torch.tensor([1.0, float("nan"), -0.0]), "n": torch.tensor(3)},
         "scaler": {"cur_scale": 512.0}, "groups": [(torch.ones(2, dtype=torch.float16),)]}
    diffs = compare_states(a, b)
    assert any(d.startswith("module/w: 1 of 3") for d in diffs)  # -0.0 is not 0.0
    assert any("scaler/cur_scale" in d for d in diffs)
    assert any("groups[0][0]: dtype" in d for d in diffs)
    nudged = torch.tensor([1.0, 2.0])
    nudged[1] = torch.nextafter(nudged[1], torch.tensor(3.0))
    assert compare_states({"x": torch.tensor([1.0, 2.0])}, {"x": nudged}) == [
        "x: 1 of 2 values differ, max |a-b| 2.38e-07"]


def test_compare_checkpoints_reads_every_file(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for folder in (a, b):
        torch.save({"module": {"w": torch.arange(4.0)}}, folder / "mp_rank_00_model_states.pt")
    torch.save({"torch": torch.zeros(3, dtype=torch.uint8)}, a / "rng_rank0.pt")
    assert compare_checkpoints(a, b, pattern="*_states.pt")["identical"]
    missing = compare_checkpoints(a, b)
    assert not missing["identical"] and "rng_rank0.pt: missing" in missing["differences"][0]
    torch.save({"module": {"w": torch.arange(4.0) * 1.5}}, b / "mp_rank_00_model_states.pt")
    found = compare_checkpoints(a, b, pattern="*_states.pt")
    assert found["difference_count"] == 1 and found["tensors"] == 1
    with pytest.raises(FileNotFoundError):
        compare_checkpoints(a, b, pattern="*.bin")


# ------------------------------------------------------------------ the check, end to end

@pytest.mark.slow
def test_gpu_check_on_cpu_trains_restores_resumes_and_evaluates_bit_identically(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "launcher.gpu_check", "--allow-cpu", "--precisions", "fp32",
         "--config", str(REPO / "configs/experiments/tiny_cpu.yaml"),
         "--set", "data.workers=0", "--segments", "40", "--participants", "3",
         "--size", "128x96", "--frames", "4", "--short-side", "96", "--batch-size", "2",
         "--steps", "4", "--skip-bench", "--work", str(tmp_path),
         "--out", str(tmp_path / "check.json")],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    summary = json.loads(lines[0])
    assert proc.returncode == 0 and summary["ok"], json.dumps(summary["steps"])[:3000]
    steps = summary["steps"]
    assert list(steps) == ["device", "data", "train_fp32", "update", "restore_fp32",
                           "resume_fp32", "eval"]
    assert json.loads((tmp_path / "check.json").read_text()) == summary  # the last rewrite
    assert steps["update"]["updates"]["fp32"]["relative_update"] > 0
    assert steps["restore_fp32"]["resaved_identical"]["tensors"] > 100
    assert steps["restore_fp32"]["weights_moved_since_init"]
    assert steps["resume_fp32"]["checkpoint"]["identical"]
    assert steps["resume_fp32"]["rng_states"]["identical"]
    assert steps["eval"]["rows"] == steps["eval"]["segments"] == steps["data"]["samples"]["s1"]
    # The loader part of the benchmark on those shards, on the CPU.
    result = subprocess.run(
        [sys.executable, "-c", _LOADER_ON_CPU, str(tmp_path / "shards" / "train"),
         *[o for o in TINY if not o.startswith("model.num_classes")]],  # real labels
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loader = json.loads(result.stdout.splitlines()[-1])
    assert set(loader["per_workers"]) == {"0", "1"}
    for figures in loader["per_workers"].values():
        assert "error" not in figures, figures
        assert 0.0 <= figures["waiting_fraction"] < 1.0 and figures["steady_steps"] >= 1
    decode = loader["jpeg_decode"]
    assert decode["frames_per_call"] == 2 * 2 and decode["device_batched_frames_per_s"] > 0


_LOADER_ON_CPU = """
import argparse, json, sys, torch
from launcher.benchmarks import gpu
parser = argparse.ArgumentParser()
gpu.add_arguments(parser)
args = parser.parse_args([a for o in sys.argv[2:] for a in ("--set", o)] + [
    "--variants", "fp32", "--batch-size", "2", "--warmup", "1", "--steps", "1", "--no-search",
    "--shards", sys.argv[1], "--loader-workers", "0,1", "--loader-steps", "3", "--gpu-decode"])
print(json.dumps(gpu.measure(args, torch.device("cpu"))["loader"]))
"""
