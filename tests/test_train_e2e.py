"""End to end on synthetic EPIC-55 shards: `fpar train` and `fpar eval`, 1 and 2 ranks (CPU,
fp32, tiny SparNet), including a 2-rank run killed after a checkpoint and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fixtures import step_losses, synthetic_epic55_shards  # noqa: F401  (fixture)
from fpar.engine.deepspeed_setup import resolve_precision
from fpar.evaluation.scores import load_scores
from fpar.experiment import load_experiment
from shards.annotations import load_segments

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "experiments" / "tiny_cpu.yaml")


def fpar(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def data_overrides(shards: Path, epochs: int, batch: int) -> list[str]:
    return [f"data.train_shards={shards / 'train'}", f"data.val_shards={shards / 's1'}",
            f"eval.test_splits={{s1: {shards / 's1'}}}", f"data.batch_size={batch}",
            f"train.stages=[{{epochs: {epochs}}}]", "train.checkpoint_every_steps=2"]



def s1_ids(shards: Path) -> set[str]:
    segments = load_segments("epic55", shards.parent / "kitchens" / "annotations", "s1")
    return set(segments["segment_id"])


@pytest.fixture(scope="module")
def runs(synthetic_epic55_shards, tmp_path_factory):  # noqa: F811
    """One 1-rank run, and 2-rank runs: uninterrupted, and killed then resumed."""
    shards = synthetic_epic55_shards
    base = tmp_path_factory.mktemp("train_runs")
    one, two, killed = base / "one", base / "two", base / "killed"
    fpar("train", TINY, *data_overrides(shards, 5, 4), "--run-dir", str(one))
    args = data_overrides(shards, 4, 2)  # 3 steps per epoch on each of 2 ranks
    fpar("train", TINY, *args, "--nproc", "2", "--run-dir", str(two))
    proc = subprocess.Popen([sys.executable, "-m", "launcher.cli", "train", TINY, *args,
                             "--nproc", "2", "--run-dir", str(killed)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    latest = killed / "checkpoints" / "latest"
    deadline = time.monotonic() + 240
    while not latest.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail(f"the run to interrupt ended (code {proc.returncode}) before its first "
                    "checkpoint was complete")
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, mid-run
    proc.wait()
    killed_at = max(step_losses(killed))
    fpar("train", *[a for a in args if a.startswith("data.train")], "--resume", str(killed),
         "--nproc", "2")
    return {"shards": shards, "one": one, "two": two, "killed": killed, "killed_at": killed_at}


def test_one_rank_sparnet_overfits_and_scores_every_test_segment(runs):
    losses = step_losses(runs["one"])
    assert sorted(losses) == list(range(1, 16))  # 12 clips / batch 4 = 3 steps x 5 epochs
    first, last = sum(losses[s] for s in (1, 2, 3)), sum(losses[s] for s in (13, 14, 15))
    assert last < 0.8 * first
    ids, outputs = load_scores(runs["one"] / "scores_s1.pt")
    assert sorted(ids) == sorted(s1_ids(runs["shards"]))
    assert outputs["verb"].shape == (4, 125) and outputs["noun"].shape == (4, 352)
    saved = load_experiment(runs["one"] / "config.yaml")
    assert saved.data.batch_size == 4 and saved.train.stages[0].epochs == 5
    log_text = (runs["one"] / "log.txt").read_text()
    assert "epoch 4 done" in log_text
    # train.precision: auto is recorded as the precision used: fp32 on a CPU.
    used = resolve_precision("auto")
    assert saved.train.precision == used and f"precision {used}," in log_text
    assert used == "fp32" or torch.cuda.is_available()


def test_two_ranks_train_and_gather_one_score_row_per_segment(runs):
    losses = step_losses(runs["two"])
    assert sorted(losses) == list(range(1, 13))
    assert sum(losses[s] for s in (10, 11, 12)) < sum(losses[s] for s in (1, 2, 3))
    ids, _ = load_scores(runs["two"] / "scores_s1.pt")
    assert len(ids) == len(set(ids)) == 4 and set(ids) == s1_ids(runs["shards"])
    summary = json.loads((runs["two"] / "summary.json").read_text())
    assert summary["step"] == 12 and summary["nonfinite_steps"] == 0


def test_killed_two_rank_run_resumes_with_the_same_losses(runs):
    assert runs["killed_at"] < 12  # the kill landed before the end
    straight, resumed = step_losses(runs["two"]), step_losses(runs["killed"])
    assert sorted(resumed) == sorted(straight)
    assert [resumed[s] for s in sorted(straight)] == [straight[s] for s in sorted(straight)]


def test_fpar_eval_with_two_ranks_writes_one_row_per_segment(runs, tmp_path):
    out = tmp_path / "s1_scores.pt"
    proc = fpar("eval", str(runs["two"]), "--split", "s1", "--nproc", "2", "--out", str(out))
    ids, outputs = load_scores(out)
    # The MS score beside the scores, every rank's frames counted once: the same tallies as
    # training's own pass over s1, and its line printed.
    ms = json.loads((tmp_path / "ms_s1.json").read_text())
    trained = json.loads((runs["two"] / "ms_s1.json").read_text())
    assert ms["test"]["frames"] == trained["test"]["frames"] > 0
    assert ms["test"]["moving"] == trained["test"]["moving"]
    assert ms["test"]["head"] == trained["test"]["head"]
    assert ms["test"]["head_cells"] == trained["test"]["head_cells"]
    assert "head_beyond_prior" in ms["scores"]
    assert sum(ms["test"]["head"]) == ms["test"]["frames"] * ms["test"]["side"] ** 2
    assert "MS f1 head" in proc.stdout
    metrics = json.loads((runs["two"] / "metrics.json").read_text())
    assert metrics["splits"]["s1"]["ms"] == trained["scores"]
    assert len(ids) == len(set(ids)) and set(ids) == s1_ids(runs["shards"])
    # Same weights as the end of training: the scores match those training wrote.
    train_ids, train_outputs = load_scores(runs["two"] / "scores_s1.pt")
    order = [train_ids.index(i) for i in ids]
    assert abs(outputs["verb"] - train_outputs["verb"][order]).max() < 1e-4
