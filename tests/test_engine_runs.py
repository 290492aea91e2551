"""The Trainer on a tiny model in separate processes: resume, stages, non-finite, precision.

Each run is its own interpreter (DeepSpeed sets its process groups up once per process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from launcher.local_launch import launch, rank_env, usable_cores

REPO = Path(__file__).resolve().parents[1]
TOY = str(REPO / "tests" / "toy_training.py")
TWO_STAGES = "train.stages=[{name: head, epochs: 1, trainable: [classifier]}, {epochs: 2}]"


def step_records(run_dir: Path) -> dict[int, dict]:
    """The last record of every step in a run's metrics.jsonl (a resume repeats some)."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "step":
            out[record["step"]] = record
    return out


def summary_of(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def run_toy(run_dir: Path, *args: str) -> dict:
    proc = subprocess.run([sys.executable, TOY, str(run_dir), *args], capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return summary_of(proc.stdout)


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory):
    """An uninterrupted 2-rank run and one preempted at step 10 then resumed."""
    base = tmp_path_factory.mktemp("toy")
    args = [TWO_STAGES, "train.checkpoint_every_steps=4"]
    straight, broken = base / "straight", base / "broken"
    assert launch([TOY, str(straight), *args], 2) == 0
    assert launch([TOY, str(broken), *args, "--preempt-at-step", "10"], 2) == 0
    preempted = step_records(broken)
    assert launch([TOY, str(broken), *args], 2) == 0
    return straight, broken, preempted


@pytest.mark.slow
def test_two_rank_resume_repeats_the_uninterrupted_losses(two_rank_runs):
    straight, broken, preempted = two_rank_runs
    assert max(preempted) == 10  # it really stopped early
    a, b = step_records(straight), step_records(broken)
    assert sorted(a) == sorted(b) == list(range(1, 19))
    assert [a[s]["loss"] for s in a] == [b[s]["loss"] for s in a]
    # The logged loss is the rank mean of the total, counted once (not with its part).
    assert all(a[s]["loss"] == pytest.approx(a[s]["parts"]["ce"]) for s in a)
    assert all("loss" not in a[s]["parts"] for s in a)
    # Losses fall on this learnable toy problem, and stage 1 froze the backbone.
    assert sum(a[s]["loss"] for s in range(13, 19)) < sum(a[s]["loss"] for s in range(1, 7))
    assert set(a[1]["lr"]) == {"classifier"} and set(a[7]["lr"]) == {"backbone", "classifier"}
    events = [json.loads(x) for x in (broken / "metrics.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "resume" and e["tag"] == "step00000010" for e in events)


@pytest.mark.slow
def test_checkpoints_are_pruned_to_the_last_k_and_best(two_rank_runs):
    _, broken, _ = two_rank_runs
    root = broken / "checkpoints"
    tags = sorted(p.name for p in root.iterdir() if p.is_dir())
    best = (root / "best").read_text().strip()
    assert (root / "latest").read_text().strip() == "step00000018"
    # The last two, the best, and the one the run resumed from (never deleted by it).
    assert set(tags) == {"step00000016", "step00000018", "step00000010", best}
    for tag in tags:
        assert (root / tag / "complete.json").is_file()
        assert {f"rng_rank{r}.pt" for r in (0, 1)} <= {p.name for p in (root / tag).iterdir()}
    state = json.loads((root / "step00000018" / "trainer_state.json").read_text())
    assert (state["epoch"], state["stage"], state["world_size"]) == (3, 1, 2)
    assert state["consumed_samples"] == 18 * 8


@pytest.mark.slow
def test_nonfinite_loss_is_detected_and_stops_the_run(tmp_path):
    summary = run_toy(tmp_path, "train.max_nonfinite_steps=3", "--nan-from-step", "4")
    assert summary["error"] == "NonFiniteError"
    assert "3 consecutive steps had a non-finite loss" in summary["message"]
    records = step_records(tmp_path)
    assert max(records) == 6 and records[3]["loss"] is not None
    assert [records[s]["nonfinite"] for s in (3, 4, 5, 6)] == [False, True, True, True]
    events = [json.loads(x)["kind"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert events.count("nonfinite") == 3


@pytest.mark.slow
@pytest.mark.parametrize("zero", [1, 2])
def test_bf16_zero_with_accumulation_and_clipping_trains(tmp_path, zero):
    summary = run_toy(tmp_path, "train.precision=bf16", f"train.zero_stage={zero}",
                      "train.grad_accum_steps=2", "train.grad_clip=1.0",
                      "train.stages=[{epochs: 2}]")
    assert summary["step"] == 12 and summary["eval_rows"] == summary["eval_unique"] == 48
    assert summary["threads_after_teardown"] == []
    records = step_records(tmp_path)
    assert all(r["grad_norm"] is not None and r["grad_norm"] > 0 for r in records.values())
    assert records[1]["clips"] == 8  # 2 accumulated micro-batches of 4
    assert records[12]["loss"] < records[1]["loss"]


def test_fp16_on_cpu_is_refused_before_starting(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "train",
         str(REPO / "configs" / "experiments" / "tiny_cpu.yaml"), "train.precision=fp16",
         f"output_dir={tmp_path}", "--nproc", "2"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 2
    assert "fp16 needs a CUDA GPU" in proc.stderr and "bf16" in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing was started or written


def test_no_process_group_outlives_teardown_after_zero3_stages(tmp_path):
    """Each stage's ZeRO-3 engine is released with its groups, so none runs at exit.

    A gloo group alive when the interpreter is torn down now and then aborts a run that
    has finished ("terminate called without an active exception", exit -6). DeepSpeed's
    ZeRO-3 keeps module-level references to the model and its groups.
    """
    summary = run_toy(tmp_path, "train.zero_stage=3", TWO_STAGES)
    assert summary["step"] == 36 and summary["eval_rows"] == 48
    assert summary["threads_after_teardown"] == []


@pytest.mark.slow
def test_zero3_checkpoint_weights_equal_the_zero0_ones(tmp_path, capfd):
    """ZeRO-3 partitions the weights over the ranks' files; load_weights gathers them."""
    from fpar.engine.checkpoint import latest_tag
    from fpar.engine.checkpoint_files import load_weights

    weights = {}
    for zero in (0, 3):
        run_dir = tmp_path / f"zero{zero}"
        assert launch([TOY, str(run_dir), f"train.zero_stage={zero}",
                       "train.stages=[{epochs: 1}]"], 2) == 0
        summaries = [json.loads(line) for line in capfd.readouterr().out.splitlines()
                     if line.startswith("{")]
        assert len(summaries) == 2
        assert all(s["threads_after_teardown"] == [] for s in summaries), summaries
        root = run_dir / "checkpoints"
        weights[zero] = load_weights(root / latest_tag(root))
    assert any((tmp_path / "zero3" / "checkpoints").glob("*/zero_pp_rank_1_*"))
    assert sorted(weights[0]) == sorted(weights[3]) == [
        "backbone.bias", "backbone.weight", "classifier.bias", "classifier.weight"]
    for name, value in weights[0].items():
        assert weights[3][name].shape == value.shape, name
        torch.testing.assert_close(weights[3][name], value, atol=1e-5, rtol=1e-4)


def test_local_ranks_share_the_cpus():
    env = rank_env(1, 2, 1234, base={})
    assert (env["RANK"], env["WORLD_SIZE"], env["MASTER_PORT"]) == ("1", "2", "1234")
    assert env["OMP_NUM_THREADS"] == str(max(1, usable_cores() // 2))
    assert rank_env(0, 2, 1, base={"OMP_NUM_THREADS": "3"})["OMP_NUM_THREADS"] == "3"
    assert "OMP_NUM_THREADS" not in rank_env(0, 1, 1, base={})
