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

from torch import nn

from fpar.engine import distributed
from fpar.evaluation.classification import top1_metrics
from fpar.experiment import load_experiment
from shards.files import atomic_write_json
from tests.toy_training import TinyModel, ToyStream

SAMPLES = 64
BASE = ["name=toy", "data.batch_size=4", "model.num_classes={class: 3}",
        "optim.lr={default: 0.01}", "eval.best_metric=top1_class",
        "eval.validate_every_epochs=0", "train.checkpoint_every_steps=2"]


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
        stream = ToyStream(cfg.data.batch_size, layout.rank, layout.world_size, cfg.seed,
                           samples=SAMPLES)
        trainer = Trainer(cfg, run_dir, TinyModel, loss_fn, stream, None, layout, device)
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
