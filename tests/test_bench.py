"""``fpar bench loader|train|scale|accuracy``: one JSON line each, with consistent figures.

The end-to-end runs use the smallest settings (tiny videos, crops and models, a step or
two); they check the promised keys and that the derived figures follow from the measured
ones, never the speeds themselves.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from launcher.bench import BENCHMARKS
from fpar.evaluation.scores import read_views
from launcher.benchmarks import accuracy, scale
from launcher.benchmarks.views import parse_view_sets
from launcher.benchmarks.stats import mean_std, median

MACHINE_KEYS = {"cpu", "cores", "torch_threads", "gpu", "torch", "deepspeed", "date",
                "load_average"}


def bench(*argv: str, timeout: float = 600) -> dict:
    """Runs ``fpar bench ... --json`` and returns its one stdout line, parsed."""
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", "bench", *argv, "--json"],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout, got {len(lines)}: {lines[:5]}"
    result = json.loads(lines[0])
    assert MACHINE_KEYS <= set(result["machine"])
    assert result["machine"]["cores"] >= 1 and result["machine"]["torch"]
    return result


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


# ------------------------------------------------------------------ small pieces

def test_every_benchmark_is_registered_and_documents_its_options():
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", "bench", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for name in ("shards", "loader", "train", "scale", "accuracy"):
        assert name in BENCHMARKS and name in proc.stdout


def test_mean_std_is_the_sample_deviation():
    assert mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0}
    assert mean_std([5.0]) == {"mean": 5.0, "std": 0.0}
    assert median([3.0, 1.0, 2.0, 10.0]) == 2.5
    with pytest.raises(ValueError):
        mean_std([])


def test_view_sets_are_parsed_and_checked():
    assert parse_view_sets("1x1, 2X3") == [(1, 1), (2, 3)]
    for bad in ("2x4", "0x1", "3", ","):
        with pytest.raises(SystemExit, match="--views"):
            parse_view_sets(bad)


def test_accuracy_summary_per_split_and_task():
    def metrics(verb, noun):
        return {split: {"verb": {"top1": verb}, "noun": {"top1": noun},
                        "action": {"top1": verb * noun / 100}} for split in ("s1", "s2")}

    summary = accuracy.summarise({0: metrics(40.0, 10.0), 1: metrics(60.0, 20.0)})
    assert summary["s1"]["verb"]["mean"] == 50.0
    assert summary["s2"]["verb"]["std"] == pytest.approx(math.sqrt(200.0))
    assert summary["s1"]["noun"]["values"] == [10.0, 20.0]
    assert summary["s1"]["action"]["values"] == [4.0, 12.0]


def test_bad_lists_are_refused_with_the_option_name():
    assert accuracy.parse_list(" 0, 1 ,2", "--seeds", int) == [0, 1, 2]
    with pytest.raises(SystemExit, match="--seeds"):
        accuracy.parse_list("0,x", "--seeds", int)
    with pytest.raises(SystemExit, match="--nprocs"):
        accuracy.parse_list(",", "--nprocs", int)


def test_scale_reads_step_times_after_the_warmup(tmp_path):
    lines = [{"kind": "step", "step": i, "step_time": t, "data_time": 0.1,
              "compute_time": t - 0.1, "clips": 8} for i, t in enumerate([9.0, 2.0, 4.0, 3.0])]
    lines.insert(2, {"kind": "epoch", "epoch": 0})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    figures = scale.summarise_steps(scale.step_records(tmp_path), warmup=1, nproc=2, batch_size=4)
    assert figures["steps_timed"] == 3 and figures["step_s"] == 3.0
    assert figures["clips_per_s"] == pytest.approx(8 / 3.0)
    with pytest.raises(ValueError, match="warm-up"):
        scale.summarise_steps(scale.step_records(tmp_path), warmup=4, nproc=2, batch_size=4)
    (tmp_path / "metrics.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="line 1"):
        scale.step_records(tmp_path)


def test_shards_benchmark_times_each_stage_of_the_builder():
    result = bench("shards", "--input", "toy", "--segments", "2", "--frames", "8", "--size", "320x180",
                   "--short-side", "96", "--flow-stride", "6,4", "--workers", "1,2")
    assert result["benchmark"] == "shards" and result["samples"] == 2
    assert result["stored_size"] == [96, 171]  # 320 x 96 / 180, rounded
    for key in ("decode_only_frames_per_s", "decode_frames_per_s", "motion_frames_per_s", "write_frames_per_s",
                "layout_frames_per_s", "overall_frames_per_s", "bytes_per_sample"):
        assert positive(result[key]), key
    stages = ("open", "decode", "flow_input", "flow", "homography", "compensation", "morphology", "warp_flow",
              "encode", "staging", "layout")
    assert list(result["seconds"]) == list(stages) == list(result["cpu_ms_per_kept_frame"])
    assert all(positive(result["seconds"][s]) for s in stages if s != "warp_flow")
    assert result["seconds"]["warp_flow"] == 0  # no --flow
    # The overall rate is that of the stages one after the other; the build's share of the
    # decode-only rate follows from the two rates.
    kept = result["samples"] * result["frames_per_sample"]
    assert result["overall_frames_per_s"] == pytest.approx(kept / sum(result["seconds"].values()))
    assert result["build_vs_decode"] == pytest.approx(result["overall_frames_per_s"] / result["decode_only_frames_per_s"])
    # One build per flow stride, the first one's figures on top; the worker counts' rates.
    assert set(result["by_flow_stride"]) == {"4", "6"} and result["flow_stride"] == 6
    assert result["by_flow_stride"]["6"]["overall_frames_per_s"] == result["overall_frames_per_s"]
    assert positive(result["by_flow_stride"]["4"]["cpu_ms_per_kept_frame"]["flow"])
    assert set(result["workers_frames_per_s"]) == {"1", "2"} and result["workers_speedup"]["1"] == 1.0
    assert all(positive(v) for v in result["workers_frames_per_s"].values())


def test_shards_benchmark_epic_like_input_has_camera_gops_at_both_rates(tmp_path):
    import av
    from av.video.frame import PictureType

    result = bench("shards", "--segments", "3", "--frames", "4", "--size", "320x180", "--short-side", "96",
                   "--flow", "--work", str(tmp_path))
    assert result["input"].startswith("EPIC-like") and result["samples"] == 3
    assert [(v["fps"], v["segments"]) for v in result["videos"]] == [(59.94, 2), (50.0, 1)]
    assert positive(result["seconds"]["warp_flow"])
    for video in result["videos"]:
        (path,) = tmp_path.glob(f"{video['video_id']}-*/{video['video_id']}.MP4")
        with av.open(str(path)) as container:
            frames = list(container.decode(container.streams.video[0]))
        keys = [i for i, f in enumerate(frames) if f.key_frame]
        assert keys[:3] == [0, round(video["fps"] / 2), 2 * round(video["fps"] / 2)]  # half-second GOPs
        assert any(int(f.pict_type) == int(PictureType.B) for f in frames)  # with B-frames


def test_loader_needs_the_videos_of_given_shards(tmp_path):
    from launcher.benchmarks import loader

    args = argparse.Namespace(shards=str(tmp_path), root=None)
    with pytest.raises(SystemExit, match="--root"):
        loader.run(args)


# ------------------------------------------------------------------ end to end

@pytest.mark.slow
def test_loader_reports_rates_ratios_and_goals(tmp_path):
    result = bench("loader", "--work", str(tmp_path), "--segments", "8", "--size", "128x72",
                   "--short-side", "72", "--crop", "32", "--clip-frames", "3", "--batch-size", "4",
                   "--seconds", "0.4", "--rounds", "1", "--workers", "1")
    rates = result["clips_per_s"]
    assert set(rates) == {"shards", "shards_64", "shards_1_worker", "shards_2_workers", "decord",
                          "jpeg_files", "decode_bound"}
    assert all(positive(v) for v in rates.values())
    assert result["ratios"]["two_workers_vs_one"] == pytest.approx(
        rates["shards_2_workers"] / rates["shards_1_worker"])
    assert result["clips_per_s_per_worker"] == pytest.approx(
        {"1": rates["shards_1_worker"], "2": rates["shards_2_workers"] / 2})
    assert result["cores_per_1000_clips_per_s"] == pytest.approx(
        {"3x32": 1000 / rates["shards"], "3x64": 1000 / rates["shards_64"]})
    assert result["fraction_of_decode_bound"] == result["ratios"]["shards_vs_decode_bound"]
    for name in ("decord", "jpeg_files", "decode_bound"):
        ratio = result["ratios"][f"shards_vs_{name}"]
        assert ratio == pytest.approx(rates["shards"] / rates[name])
        goal = result["goals"][f"shards_vs_{name}"]
        assert goal["met"] == (ratio >= goal["goal"])
    settings = result["settings"]
    assert settings["stored_size"] == [72, 128] and settings["stored_frames"] == 32
    assert settings["segments"] == 8


@pytest.mark.slow
def test_train_reports_engine_overhead_and_ms_head_cost():
    result = bench("train", "--scale", "tiny", "--crop", "32", "--frames", "2",
                   "--batch-size", "2", "--steps", "2", "--warmup", "0")
    step = result["step_s"]
    for system in ("sparnet", "baseline"):
        assert positive(step[system]["deepspeed"]) and positive(step[system]["plain"])
        assert result["engine_overhead"][system] == pytest.approx(
            step[system]["deepspeed"] / step[system]["plain"])
        assert result["clips_per_s"][system]["plain"] == pytest.approx(2 / step[system]["plain"])
    assert result["ms_head_cost"]["deepspeed"] == pytest.approx(
        step["sparnet"]["deepspeed"] / step["baseline"]["deepspeed"] - 1)
    assert result["engine_overhead_goal"]["met"] == (max(result["engine_overhead"].values()) <= 1.05)
    assert result["settings"]["crop"] == 32 and result["settings"]["backbone"] == "resnet18"


@pytest.fixture(scope="module")
def tiny_work(tmp_path_factory):
    """One work folder for scale and accuracy: the tiny data and shards are built once."""
    return tmp_path_factory.mktemp("tiny_work")


@pytest.mark.slow
def test_scale_trains_at_one_and_two_processes(tiny_work):
    result = bench("scale", "--work", str(tiny_work), "--epochs", "1", "--warmup", "0",
                   "--workers", "1")
    one, two = result["runs"]["1"], result["runs"]["2"]
    assert one["clips_per_step"] == 4 and two["clips_per_step"] == 8
    for figures in (one, two):
        assert positive(figures["step_s"]) and figures["steps_timed"] >= 1
        assert figures["clips_per_s"] == pytest.approx(figures["clips_per_step"] / figures["step_s"])
    assert one["efficiency"] == pytest.approx(1.0)
    assert two["efficiency"] == pytest.approx(two["clips_per_s"] / (2 * one["clips_per_s"]))


@pytest.mark.slow
def test_accuracy_reports_each_system_on_seen_and_unseen(tiny_work):
    result = bench("accuracy", "--scale", "tiny", "--seeds", "0", "--work", str(tiny_work),
                   "--workers", "1")
    assert result["seeds"] == [0]
    for system in ("sparnet", "baseline"):
        for split in ("s1", "s2"):
            for task in ("verb", "noun", "action"):
                cell = result["top1"][system][split][task]
                assert 0.0 <= cell["mean"] <= 100.0 and cell["std"] == 0.0
                assert cell["values"] == [cell["mean"]]
    gain = result["mean_gain"]["baseline->sparnet"]["s2"]["verb"]
    assert gain == pytest.approx(result["top1"]["sparnet"]["s2"]["verb"]["mean"]
                                 - result["top1"]["baseline"]["s2"]["verb"]["mean"])
    assert result["test_segments"]["s1"] > 0 and result["test_segments"]["s2"] > 0
    assert (tiny_work / "runs" / "sparnet_seed0" / "metrics.json").is_file()
    oracle = result["oracle_verb_top1"]
    assert set(oracle) == {"world", "screen", "majority"}
    assert 0.0 <= oracle["world"]["s1"] <= 100.0 and 0.0 <= oracle["majority"]["s2"] <= 100.0
    # The majority rates again, from the annotation files the generator wrote.
    annotations = tiny_work / "data" / "annotations"
    train = pd.read_csv(annotations / "EPIC_train_action_labels.csv")
    for task in ("verb", "noun"):
        majority = train[f"{task}_class"].value_counts().sort_index().idxmax()  # ties: lowest class
        for split in ("s1", "s2"):
            test = pd.read_csv(annotations / f"EPIC_test_{split}_labels.csv")
            expected = round(100.0 * float((test[f"{task}_class"] == majority).mean()), 1)
            assert result["majority_top1"][task][split] == expected, (task, split)
    assert result["majority_top1"]["verb"] == oracle["majority"]
    # Scored again by fpar eval: one view gives the training's own scores, 2 x 3 views too.
    for system in ("sparnet", "baseline"):
        views = result["views"][system]
        assert set(views) == {"1x1", "2x3"}
        for split in ("s1", "s2"):
            for task in ("verb", "noun", "action"):
                assert views["1x1"]["top1"][split][task] == \
                    result["top1"][system][split][task]["mean"]
                assert 0.0 <= views["2x3"]["top1"][split][task] <= 100.0
            assert positive(views["2x3"]["eval_wall_s"][split])
    scored = tiny_work / "runs" / "sparnet_seed0" / "views_2x3" / "scores_s1.pt"
    assert read_views(scored) == {"clips": 2, "crops": 3, "views": 6, "aggregate": "prob"}
    # The MS score: SparNet's head next to the trivial predictors; the baseline has no head.
    ms = result["ms_score"]
    for split in ("s1", "s2"):
        head = ms["sparnet"][split]["head_f1"]
        assert 0.0 <= head["mean"] <= 1.0 and head["values"] == [head["mean"]]
        assert ms["sparnet"][split]["all_static_f1"]["mean"] == 0.0
        assert "head_f1" not in ms["baseline"][split]
        beyond = ms["sparnet"][split]["head_beyond_prior_f1"]["mean"]
        assert 0.0 <= beyond <= 1.0 and "head_beyond_prior_f1" not in ms["baseline"][split]
        assert 0.0 <= ms["sparnet"][split]["head_agrees_with_prior"]["mean"] <= 1.0
        assert (ms["baseline"][split]["train_frequency_f1"]
                == ms["sparnet"][split]["train_frequency_f1"])
    run_metrics = json.loads((tiny_work / "runs" / "sparnet_seed0" / "metrics.json").read_text())
    assert run_metrics["splits"]["s1"]["ms"]["head"]["f1"] == ms["sparnet"]["s1"]["head_f1"]["mean"]
