"""Unit tests of the engine pieces that need no process group."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fpar.config import ConfigError
from fpar.engine import checkpoint as ckpt
from fpar.engine import distributed, preemption
from fpar.engine.deepspeed_setup import build_ds_config, check_precision
from fpar.engine.optim import OptimConfig, StageConfig, lr_factor, stage_param_groups
from fpar.evaluation.classification import top1_metrics
from fpar.experiment import load_experiment
from shards.files import atomic_write_json


def test_lone_process_env_is_completed_and_partial_env_refused():
    env: dict[str, str] = {}
    layout = distributed.read_env(env)
    assert (layout.rank, layout.world_size, layout.is_main) == (0, 1, True)
    assert set(distributed.ENV_KEYS) <= set(env) and int(env["MASTER_PORT"]) > 0
    with pytest.raises(RuntimeError, match="MASTER_PORT"):
        distributed.read_env({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2",
                              "MASTER_ADDR": "x"})
    with pytest.raises(RuntimeError, match="outside WORLD_SIZE"):
        distributed.read_env({"RANK": "2", "LOCAL_RANK": "0", "WORLD_SIZE": "2",
                              "MASTER_ADDR": "x", "MASTER_PORT": "1"})


def test_cpu_accelerator_and_extension_cache_default(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    env = {"FPAR_CACHE": "/somewhere"}
    assert distributed.prepare_accelerator(env) == "cpu"
    assert env["DS_ACCELERATOR"] == "cpu"
    assert env["TORCH_EXTENSIONS_DIR"] == "/somewhere/torch_extensions"
    kept = {"TORCH_EXTENSIONS_DIR": "/mine"}
    distributed.prepare_accelerator(kept)
    assert kept["TORCH_EXTENSIONS_DIR"] == "/mine"


def test_fp16_refused_on_cpu_with_a_clear_message():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU.*bf16"):
        check_precision("fp16", 0, cuda_available=False)
    check_precision("fp16", 2, cuda_available=True)
    check_precision("bf16", 3, cuda_available=False)
    with pytest.raises(ConfigError, match="zero_stage"):
        check_precision("fp32", 4, cuda_available=False)


def test_deepspeed_config_carries_precision_zero_accumulation_and_clip():
    cfg = build_ds_config("bf16", 2, micro_batch=3, grad_accum=4, grad_clip=1.5)
    assert cfg["train_micro_batch_size_per_gpu"] == 3
    assert cfg["gradient_accumulation_steps"] == 4
    assert cfg["gradient_clipping"] == 1.5
    assert cfg["zero_optimization"]["stage"] == 2
    assert cfg["bf16"]["enabled"] and not cfg["fp16"]["enabled"]
    with pytest.raises(ConfigError, match="grad_accum"):
        build_ds_config("fp32", 0, 2, 0, 0.0)


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(3, 3)
        self.classifier = nn.Linear(3, 2)

    def param_groups(self):
        return {"backbone": list(self.backbone.parameters()),
                "classifier": list(self.classifier.parameters())}


def test_stage_freezes_untrained_groups_and_sets_group_learning_rates():
    model = Grouped()
    optim = OptimConfig(lr={"default": 1e-3, "backbone": 1e-5})
    groups = stage_param_groups(model, optim, StageConfig(trainable=["classifier"],
                                                          lr={"classifier": 0.1}))
    assert [(g["name"], g["lr"]) for g in groups] == [("classifier", 0.1)]
    assert not any(p.requires_grad for p in model.backbone.parameters())
    groups = stage_param_groups(model, optim, StageConfig())
    assert [(g["name"], g["lr"]) for g in groups] == [("backbone", 1e-5), ("classifier", 1e-3)]
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ConfigError, match="unknown group.*'convlstm'"):
        stage_param_groups(model, optim, StageConfig(trainable=["convlstm"]))
    with pytest.raises(ConfigError, match="lr.backbon"):
        stage_param_groups(model, OptimConfig(lr={"default": 1.0, "backbon": 1.0}), StageConfig())
    # A known group the model lacks (from a shared base config) is ignored.
    stage_param_groups(model, OptimConfig(lr={"default": 1.0, "ms_head": 1.0}), StageConfig())


def test_schedules_follow_epochs_and_stage():
    step_decay = OptimConfig(scheduler="multistep", milestones=[2, 3], gamma=0.1)
    stage = StageConfig(epochs=4)
    factors = [lr_factor(s, step_decay, stage, steps_per_epoch=10) for s in (0, 19, 20, 30)]
    assert factors == pytest.approx([1.0, 1.0, 0.1, 0.01])
    own = StageConfig(epochs=4, milestones=[1])
    assert lr_factor(10, step_decay, own, 10) == pytest.approx(0.1)
    cosine = OptimConfig(scheduler="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, cosine, stage, 10) == pytest.approx(1.0)
    assert lr_factor(20, cosine, stage, 10) == pytest.approx(0.55)
    assert lr_factor(40, cosine, stage, 10) == pytest.approx(0.1)
    warm = OptimConfig(scheduler="constant", warmup_steps=4)
    assert [lr_factor(s, warm, stage, 10) for s in (0, 3, 9)] == pytest.approx([0.25, 1, 1])


def test_only_complete_checkpoints_count(tmp_path):
    root = tmp_path / "checkpoints"
    for step, complete in ((10, True), (20, True), (30, False)):
        tag_dir = root / ckpt.step_tag(step)
        tag_dir.mkdir(parents=True)
        atomic_write_json(tag_dir / ckpt.STATE, {"step": step})
        if complete:
            atomic_write_json(tag_dir / ckpt.COMPLETE, {"step": step})
    (root / ckpt.LATEST).write_text(ckpt.step_tag(30))  # crash between the two writes
    assert ckpt.latest_tag(root) == ckpt.step_tag(20)
    assert ckpt.complete_tags(root) == [ckpt.step_tag(10), ckpt.step_tag(20)]
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        ckpt.read_trainer_state(root / ckpt.step_tag(30))
    assert ckpt.latest_tag(tmp_path / "none") is None


def test_rng_state_round_trip():
    state = ckpt.rng_state()
    first = (np.random.rand(), torch.rand(1).item())
    ckpt.set_rng_state(state)
    assert (np.random.rand(), torch.rand(1).item()) == first


def test_preemption_flag():
    preemption.clear()
    assert not preemption.requested()
    preemption.request(10, None)
    assert preemption.requested()
    preemption.clear()
    assert not preemption.requested()


def test_top1_metrics_skip_unlabelled_rows():
    logits = {"verb": np.array([[2.0, 0], [0, 2.0], [2.0, 0]]),
              "noun": np.array([[0, 1.0], [0, 1.0], [1.0, 0]])}
    labels = {"verb": np.array([0, 0, -1]), "noun": np.array([1, 1, 0])}
    m = top1_metrics(logits, labels)
    assert m["top1_verb"] == 0.5 and m["top1_noun"] == 1.0
    assert m["top1_action"] == 0.5 and m["mean_top1"] == 0.75


def test_experiment_config_validates_keys_and_splits():
    cfg = load_experiment(None, ["data.test_shards=/t", "eval.test_splits={s2: /u}"])
    assert cfg.shard_dir("s2") == "/u" and cfg.test_splits() == {"s2": "/u"}
    with pytest.raises(ConfigError, match="split 'val'"):
        cfg.shard_dir("val")
    with pytest.raises(ConfigError, match="train.precison"):
        load_experiment(None, ["train.precison=bf16"])
    with pytest.raises(ConfigError, match="keep_checkpoints"):
        load_experiment(None, ["train.keep_checkpoints=1"])
    assert math.isclose(load_experiment(None, ["optim.lr={default: 1}"]).optim.lr["default"], 1)


def test_a_stale_extension_lock_does_not_block_the_process_group(tmp_path):
    # A job killed while compiling DeepSpeed's shm op leaves its lock file behind; a later
    # start must not wait on it.
    import subprocess
    import sys

    (tmp_path / "deepspeed_shm_comm").mkdir()
    (tmp_path / "deepspeed_shm_comm" / "lock").touch()
    code = ("from fpar.engine import distributed as d\n"
            "layout = d.read_env()\n"
            "d.init_process_group(layout)\n"
            "import torch.distributed as dist\n"
            "print('world', dist.get_world_size())\n"
            "d.teardown()\n")
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["TORCH_EXTENSIONS_DIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "world 1" in proc.stdout
