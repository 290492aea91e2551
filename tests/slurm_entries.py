"""A job entry for the SLURM tests: the real Trainer and DeepSpeed engine on a toy problem.

``toy_run`` has ``fpar.train.run``'s signature and path through the engine (process group
from RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT, DeepSpeed over gloo, atomic checkpoints,
preemption at a step boundary), with a 2-layer model and an in-memory stream instead of a
shard-fed network, so that a job takes seconds on two CPU nodes. It records what the tests
check: the process group's members (``group/rank<k>.json``: rank, world size, every
member's hostname, gathered over the group) and, on rank 0, a digest of the final weights
and the top-1 accuracy (``final.json``, ``metrics.json``). ``FPAR_TOY_STEP_SLEEP`` slows
each step (seconds) so that a signal can land mid-training.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from fpar.engine import distributed
from fpar.engine.predict import top1_metrics
from fpar.experiment import load_experiment
from fpar.io import atomic_write_json
from fpar.models.output import ModelOutput

SAMPLES = 64
BASE = ["name=toy", "data.batch_size=4", "model.num_classes={class: 3}",
        "optim.lr={default: 0.01}", "eval.best_metric=top1_class",
        "eval.validate_every_epochs=0", "train.checkpoint_every_steps=2"]


class ToyNet(nn.Module):
    """Linear layers with dropout (dropout makes the resumed RNG state matter)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(8, 16)
        self.classifier = nn.Linear(16, 3)
        self.drop = nn.Dropout(0.2)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"backbone": list(self.backbone.parameters()),
                "classifier": list(self.classifier.parameters())}

    def forward(self, batch: dict) -> ModelOutput:
        hidden = self.drop(torch.relu(self.backbone(batch["frames"])))
        return ModelOutput(logits={"class": self.classifier(hidden)})


class ToyStream:
    """A 3-class problem split over ranks; batches depend on (seed, epoch) only."""

    def __init__(self, batch: int, rank: int, world: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(99)
        self.x = torch.randn(SAMPLES, 8, generator=gen)
        self.y = (self.x[:, 0] > 0.3).long() + (self.x[:, 1] > 0.3).long()
        self.batch, self.rank, self.world, self.seed = batch, rank, world, seed
        self.steps_per_epoch = SAMPLES // (batch * world)

    def _batch(self, idx: torch.Tensor) -> dict:
        return {"frames": self.x[idx], "class": self.y[idx],
                "segment_id": [f"s{int(i)}" for i in idx]}

    def epoch_batches(self, epoch: int, start_step: int = 0):
        order = torch.randperm(SAMPLES, generator=torch.Generator().manual_seed(
            self.seed * 100 + epoch))[self.rank::self.world]
        for step in range(start_step, self.steps_per_epoch):
            yield self._batch(order[step * self.batch:(step + 1) * self.batch])

    def eval_batches(self):
        mine = torch.arange(SAMPLES)[self.rank::self.world]
        for start in range(0, len(mine), self.batch):
            yield self._batch(mine[start:start + self.batch])

    def epoch_report(self) -> dict:
        return {"expected": self.steps_per_epoch * self.batch, "skipped_undecodable": 0}


def weights_digest(module: nn.Module) -> str:
    """SHA-256 over the exact bytes of every parameter and buffer."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def toy_run(config: str | None, overrides: Sequence[str] = (), run_dir: str | None = None,
            resume: bool = False) -> dict[str, Any]:
    """Trains the toy problem as one rank of the job (``fpar.train.run``'s signature)."""
    from fpar.trainer import Trainer

    cfg = load_experiment(config, [*BASE, *overrides])
    run_dir = Path(run_dir or ".")
    layout = distributed.read_env()
    device = distributed.init_process_group(layout)
    pause = float(os.environ.get("FPAR_TOY_STEP_SLEEP", "0"))

    def loss_fn(output, batch):
        time.sleep(pause)
        loss = nn.functional.cross_entropy(output.logits["class"].float(), batch["class"])
        return loss, {"ce": float(loss.detach())}

    try:
        members = distributed.gather_objects(socket.gethostname())
        atomic_write_json(run_dir / "group" / f"rank{layout.rank}.json",
                          {"rank": layout.rank, "world_size": layout.world_size,
                           "hostname": socket.gethostname(), "members": members,
                           "resume": resume})
        stream = ToyStream(cfg.data.batch_size, layout.rank, layout.world_size, cfg.seed)
        trainer = Trainer(cfg, run_dir, ToyNet, loss_fn, stream, None, layout, device)
        summary = trainer.fit(resume_required=resume)
        ids, logits, labels = trainer.predict(stream)
        if layout.is_main:
            atomic_write_json(run_dir / "metrics.json", top1_metrics(logits, labels))
            atomic_write_json(run_dir / "final.json",
                              {"weights": weights_digest(trainer.engine.module),
                               "step": summary["step"], "segments": len(ids)})
        trainer.close()
        return summary
    finally:
        distributed.teardown()
