"""A tiny model and in-memory stream to drive the Trainer without shards (run as a script).

``python tests/toy_training.py RUN_DIR [KEY=VALUE ...] [--nan-from-step N]
[--preempt-at-step N]`` trains one rank (the environment says which) and prints the
summary as JSON on its last line. Each test run is a fresh process because DeepSpeed's
process groups cannot be set up twice in one interpreter.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fpar.engine import distributed, preemption  # noqa: E402
from fpar.experiment import load_experiment  # noqa: E402
from fpar.models.output import ModelOutput  # noqa: E402

NUM_SAMPLES = 48


class TinyModel(nn.Module):
    """Linear "backbone" + dropout + classifier; dropout makes RNG state matter on resume."""

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
    """A learnable 3-class problem, split over ranks; batches depend on (seed, epoch) only."""

    def __init__(self, batch_size: int, rank: int, world: int, seed: int,
                 samples: int = NUM_SAMPLES) -> None:
        gen = torch.Generator().manual_seed(1234)
        self.samples = samples
        self.x = torch.randn(samples, 8, generator=gen)
        self.y = (self.x[:, 0] > 0.5).long() + (self.x[:, 1] > 0.5).long()
        self.batch, self.rank, self.world, self.seed = batch_size, rank, world, seed
        self.steps_per_epoch = samples // (batch_size * world)

    def _batch(self, idx: torch.Tensor) -> dict:
        return {"frames": self.x[idx], "class": self.y[idx],
                "segment_id": [f"seg{int(i)}" for i in idx]}

    def epoch_batches(self, epoch: int, start_step: int = 0):
        order = torch.randperm(self.samples, generator=torch.Generator().manual_seed(
            self.seed * 100 + epoch))
        mine = order[self.rank::self.world]
        for step in range(start_step, self.steps_per_epoch):
            yield self._batch(mine[step * self.batch:(step + 1) * self.batch])

    def eval_batches(self):
        mine = torch.arange(self.samples)[self.rank::self.world]
        for start in range(0, len(mine), self.batch):
            yield self._batch(mine[start:start + self.batch])

    def epoch_report(self) -> dict:
        return {"expected": self.steps_per_epoch * self.batch, "skipped_undecodable": 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--nan-from-step", type=int, default=0,
                        help="the loss is NaN from this optimiser step on (0 = never)")
    parser.add_argument("--preempt-at-step", type=int, default=0)
    args = parser.parse_args(argv)
    from fpar.trainer import Trainer

    base = ["name=toy", "data.batch_size=4", "model.num_classes={class: 3}",
            "optim.lr={default: 0.01}", "eval.best_metric=top1_class"]
    cfg = load_experiment(None, base + args.overrides)
    layout = distributed.read_env()
    device = distributed.init_process_group(layout)
    calls = {"n": 0}

    def loss_fn(output, batch):
        calls["n"] += 1
        loss = nn.functional.cross_entropy(output.logits["class"].float(), batch["class"])
        step = (calls["n"] - 1) // cfg.train.grad_accum_steps + 1
        if args.nan_from_step and step >= args.nan_from_step:
            loss = loss * float("nan")
        if args.preempt_at_step and step == args.preempt_at_step:
            preemption.request()
        # Parts carry the total under "loss", as fpar.models.compute_loss does.
        return loss, {"ce": float(loss.detach()), "loss": float(loss.detach())}

    stream = ToyStream(cfg.data.batch_size, layout.rank, layout.world_size, cfg.seed)
    try:
        trainer = Trainer(cfg, args.run_dir, TinyModel, loss_fn, stream, stream, layout, device)
        try:
            summary = trainer.fit()
        except preemption.Preempted as err:
            summary = {"preempted": err.checkpoint}
        except Exception as err:  # reported to the test as JSON
            summary = {"error": type(err).__name__, "message": str(err)}
        ids, logits, _ = trainer.predict(stream)
        summary["eval_rows"] = len(ids)
        summary["eval_unique"] = len(set(ids))
        trainer.close()
    finally:
        distributed.teardown()
    summary["threads_after_teardown"] = distributed.process_group_threads()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
