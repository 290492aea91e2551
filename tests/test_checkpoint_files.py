"""Checkpoint files are data: weights-only reading with an allow-list, RNG states as tensors."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fpar.engine.checkpoint import CheckpointManager, rng_state, set_rng_state
from fpar.engine.checkpoint_files import (
    CheckpointRefused,
    files_of_rank,
    load_file,
    weights_only_loads,
)

REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling it runs a command that leaves ``marker`` behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def with_payload(path: Path, marker: Path) -> None:
    """Rewrites a checkpoint file with a payload beside its real content."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    state["extra"] = Payload(marker)
    torch.save(state, path)


def old_rng_file(path: Path) -> None:
    """Rewrites an RNG file as fpar wrote it before: python and numpy state objects."""
    set_rng_state(load_file(path))
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(),
                "torch": torch.get_rng_state()}, path)


def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(np.random.randn()), float(torch.rand(1))


def test_rng_states_read_weights_only_and_restore_exactly(tmp_path):
    random.seed(3), np.random.seed(4), torch.manual_seed(5)
    np.random.randn()  # a cached gaussian is part of the state
    torch.save(rng_state(), tmp_path / "rng_rank0.pt")
    expected = draws()
    draws()
    set_rng_state(load_file(tmp_path / "rng_rank0.pt"))  # weights-only: no trust needed
    assert draws() == expected
    old_rng_file(tmp_path / "rng_rank0.pt")  # the same state in the old form
    expected = draws()
    with pytest.raises(CheckpointRefused, match="rng_rank0.pt.*numpy.*--trust-checkpoint"):
        load_file(tmp_path / "rng_rank0.pt")
    set_rng_state(load_file(tmp_path / "rng_rank0.pt", trust=True))
    assert draws() == expected


@pytest.mark.parametrize("name", ["mp_rank_00_model_states.pt", "rng_rank0.pt",
                                  "zero_pp_rank_0_mp_rank_00_optim_states.pt"])
def test_a_payload_is_refused_and_never_runs(tmp_path, name):
    marker = tmp_path / "ran"
    path = tmp_path / name
    torch.save({"module": {"w": torch.ones(2)}}, path)
    with_payload(path, marker)
    with pytest.raises(CheckpointRefused) as err:
        load_file(path)
    message = str(err.value)
    assert str(path) in message and "posix.system" in message and "--trust-checkpoint" in message
    # DeepSpeed's own loads ask for weights_only=False: inside, they are weights-only too.
    with pytest.raises(CheckpointRefused, match="posix.system"), weights_only_loads():
        torch.load(path, weights_only=False)
    assert not marker.exists()
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def test_damaged_file_is_named(tmp_path):
    path = tmp_path / "mp_rank_00_model_states.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointRefused, match="mp_rank_00_model_states.pt: refused: not readable as checkpoint data \\(Unsupported operand"):
        load_file(path)


def test_every_file_is_checked_by_one_rank():
    files = [Path(n) for n in ("mp_rank_00_model_states.pt", "rng_rank0.pt", "rng_rank1.pt",
                               "rng_rank2.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt")]
    shares = [files_of_rank(files, r, 2) for r in range(2)]
    assert set(shares[0]) | set(shares[1]) == set(files)
    assert [p.name for p in shares[1]] == ["mp_rank_00_model_states.pt", "rng_rank1.pt",
                                           "zero_pp_rank_1_mp_rank_00_optim_states.pt"]


def test_pruning_removes_only_its_own_tag_folders(tmp_path):
    root = tmp_path / "checkpoints"
    manager = CheckpointManager(root, rank=0, keep=2)
    for step in (1, 2, 3):  # fpar's: complete ones
        (root / f"step{step:08d}").mkdir(parents=True)
        (root / f"step{step:08d}" / "complete.json").write_text(f'{{"step": {step}}}')
    (root / "step00000004").mkdir()  # fpar's, interrupted while saving
    (root / "step00000004" / "saving.json").write_text('{"step": 4}')
    user = [root / "exported", root / "step00000000", root / "step1"]
    for folder in user:  # the user's: another name, or a tag's name without fpar's marker
        folder.mkdir()
        (folder / "mine.txt").write_text("keep me")
    manager._prune()
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["exported", "step00000000", "step1", "step00000002", "step00000003"])
    assert all((folder / "mine.txt").read_text() == "keep me" for folder in user)


@pytest.mark.slow
def test_a_users_folders_in_checkpoints_survive_training(tmp_path):
    root = tmp_path / "checkpoints"
    user = [root / "exported", root / "step00000099"]
    for folder in user:
        folder.mkdir(parents=True)
        (folder / "mine.txt").write_text("keep me")
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "toy_training.py"), str(tmp_path),
                           "train.checkpoint_every_steps=2", "train.stages=[{epochs: 1}]"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tags = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "complete.json").is_file())
    assert tags[-1] == "step00000012" and len(tags) <= 3  # pruned: 2 kept and the best
    assert all((folder / "mine.txt").read_text() == "keep me" for folder in user)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(tags + ["exported", "step00000099"])


@pytest.mark.slow
def test_zero3_gathering_and_comparison_read_weights_only(tmp_path):
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    from fpar.engine.checkpoint_files import load_weights
    from launcher.checkpoint_compare import compare_checkpoints

    proc = subprocess.run([sys.executable, str(REPO / "tests" / "toy_training.py"), str(tmp_path),
                           "train.zero_stage=3", "train.precision=bf16", "train.stages=[{epochs: 1}]"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tag_dir = tmp_path / "checkpoints" / "step00000012"
    weights = load_weights(tag_dir)  # ZeRO-3 bf16 files need nothing beyond the allow-list
    assert sorted(weights) == ["backbone.bias", "backbone.weight", "classifier.bias", "classifier.weight"]
    assert compare_checkpoints(tag_dir, tag_dir)["identical"]
    marker = tmp_path / "payload_ran"
    optim = next(tag_dir.glob("*zero_pp_rank_0_mp_rank_00_optim_states.pt"))
    with_payload(optim, marker)
    with pytest.raises(CheckpointRefused, match=f"{optim.name}: refused.*posix.system"):
        load_weights(tag_dir)
    with pytest.raises(CheckpointRefused, match=f"{optim.name}: refused"):
        compare_checkpoints(tag_dir, tag_dir)
    # DeepSpeed's gathering unpickles with weights_only=False; inside, it cannot run the payload.
    with pytest.raises(CheckpointRefused, match="posix.system"), weights_only_loads():
        get_fp32_state_dict_from_zero_checkpoint(str(tag_dir.parent), tag=tag_dir.name)
    assert not marker.exists()
    assert sorted(load_weights(tag_dir, trust=True)) == sorted(weights)
    assert marker.exists()  # the opt-in does what it says


def test_deepspeed_types_load_and_deepspeed_is_imported_only_for_them(tmp_path):
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    torch.save({"loss_scaler": DynamicLossScaler(init_scale=2.0**16, scale_window=1000,
                                                  min_scale=1, delayed_shift=2,
                                                  consecutive_hysteresis=False,
                                                  raise_error_at_min_scale=True, dtype=torch.half),
                "static": LossScaler(128.0), "zero_stage": ZeroStageEnum.optimizer_states,
                "mappings": [{"w": fragment_address(numel=4, start=0)}]}, tmp_path / "optim.pt")
    torch.save({"module": {"w": torch.ones(2)}}, tmp_path / "model.pt")
    script = ("import sys; from fpar.engine.checkpoint_files import load_file; "
              "load_file(sys.argv[1]); print('deepspeed' in sys.modules); "
              "state = load_file(sys.argv[2]); print('deepspeed' in sys.modules); "
              "print(state['loss_scaler'].cur_scale, state['loss_scaler'].dtype, "
              "int(state['zero_stage']), state['mappings'][0]['w'].numel)")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "model.pt"),
                           str(tmp_path / "optim.pt")], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0] == "False"
    assert proc.stdout.splitlines()[-1] == "65536.0 torch.float16 1 4"
