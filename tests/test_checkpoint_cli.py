"""A checkpoint is data: payloads in its files never run through train, eval or report."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures import step_losses, synthetic_epic55_shards  # noqa: F401  (fixture)
from test_checkpoint_files import old_rng_file, with_payload

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "experiments" / "tiny_cpu.yaml")
TAG = "step00000003"  # one epoch: 12 clips in batches of 4
FILES = {"model": "mp_rank_00_model_states.pt", "optimizer": "zero_pp_rank_0_mp_rank_00_optim_states.pt",
         "rng": "rng_rank0.pt"}


def fpar(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launcher.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)



@pytest.fixture(scope="module")
def run(synthetic_epic55_shards, tmp_path_factory):  # noqa: F811
    """A one-epoch ZeRO-1 run (model, optimiser and RNG files) and a second epoch of it."""
    shards = synthetic_epic55_shards
    base = tmp_path_factory.mktemp("checkpoint_cli")
    run_dir = base / "run"
    proc = fpar("train", TINY, f"data.train_shards={shards / 'train'}",
                f"eval.test_splits={{s1: {shards / 's1'}}}", "train.zero_stage=1",
                "train.stages=[{epochs: 1}]", "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(FILES.values()) == sorted(p.name for p in (run_dir / "checkpoints" / TAG).glob("*.pt"))
    straight = base / "straight"
    shutil.copytree(run_dir, straight)
    proc = fpar("train", "train.stages=[{epochs: 2}]", "--resume", str(straight))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, straight


def commands(run_dir: Path, shards: Path) -> dict[str, list[str]]:
    return {"train": ["train", "train.stages=[{epochs: 2}]", "--resume", str(run_dir)],
            "eval": ["eval", str(run_dir), "--split", str(shards / "s1")],
            "report": ["report", str(run_dir), "--samples", "1"]}


@pytest.mark.parametrize("kind", sorted(FILES))
def test_a_payload_in_any_checkpoint_file_never_runs(run, synthetic_epic55_shards, tmp_path,  # noqa: F811
                                                     kind):
    copy = tmp_path / "run"
    shutil.copytree(run[0], copy)
    marker = tmp_path / "payload_ran"
    path = copy / "checkpoints" / TAG / FILES[kind]
    with_payload(path, marker)
    for command, args in commands(copy, synthetic_epic55_shards).items():
        proc = fpar(*args)
        assert proc.returncode != 0, (command, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, (command, proc.stderr[-2000:])
        assert str(path) in proc.stderr and "--trust-checkpoint" in proc.stderr, command
        assert not marker.exists(), command
    assert not (copy / "report").exists() or not (copy / "report" / "index.html").exists()
    assert max(step_losses(copy)) == 3  # the resume trained nothing


def test_an_old_checkpoint_resumes_exactly_with_trust(run, synthetic_epic55_shards, tmp_path):  # noqa: F811
    run_dir, straight = run
    copy = tmp_path / "old"
    shutil.copytree(run_dir, copy)
    old_rng_file(copy / "checkpoints" / TAG / FILES["rng"])
    args = commands(copy, synthetic_epic55_shards)
    proc = fpar(*args["train"])
    assert proc.returncode == 2 and "rng_rank0.pt" in proc.stderr and "numpy" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = fpar(*args["eval"], "--trust-checkpoint")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = fpar(*args["train"], "--trust-checkpoint")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The old RNG form restores the same states: the second epoch is the new form's.
    assert step_losses(copy) == step_losses(straight) and max(step_losses(copy)) == 6
