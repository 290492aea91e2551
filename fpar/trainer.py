"""The training loop: stages, DeepSpeed steps, non-finite guards, checkpoints, validation.

The trainer knows models only through their interface (``forward(batch) -> ModelOutput``,
``param_groups()``) and a loss function ``(output, batch) -> (loss, parts)``; data only
through a stream with ``steps_per_epoch``, ``epoch_batches(epoch, start_step)`` and
``eval_batches()``. Its state (``TrainerState``) is saved with every checkpoint, so a run
resumed from one sees the same batches and random numbers as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from fpar.engine import checkpoint as ckpt
from fpar.engine import deepspeed_setup, distributed, preemption
from fpar.engine.optim import build_adam, scheduler_factory, stage_param_groups
from fpar.data.batch import prepare_batch
from fpar.engine.predict import predict_stream
from fpar.engine.run_log import RunLog
from fpar.evaluation.classification import top1_metrics
from fpar.experiment import ExperimentConfig
from fpar.run_layout import SAMPLES_DIR, checkpoints_dir

log = logging.getLogger("fpar.train")


def seed_everything(seed: int) -> None:
    """Seeds python's, numpy's and torch's global random streams."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class NonFiniteError(RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradient norm."""


@dataclasses.dataclass
class TrainerState:
    """Where training stands; saved with every checkpoint (JSON).

    Attributes:
        step: Optimiser steps done over the whole run.
        epoch: Epoch in progress (over all stages), or the next one at an epoch's end.
        step_in_epoch: Optimiser steps done in ``epoch``.
        consumed_samples: Clips consumed over all ranks.
        data_seed: Seed of the data order and augmentation.
        stage: Index of the stage whose optimiser the checkpoint holds.
        world_size: Ranks that wrote the checkpoint.
        global_batch: Clips of one micro-batch over all ranks: what a resume at another
            world size keeps, so that the epoch's sample sequence continues.
        best_score: Best validation score so far (None before the first validation).
        nonfinite_steps: Steps skipped or flagged for a non-finite loss or gradient.
        skipped_steps: Steps DeepSpeed skipped (fp16 overflow).
    """

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    consumed_samples: int = 0
    data_seed: int = 0
    stage: int = 0
    world_size: int = 1
    global_batch: int = 0
    best_score: float | None = None
    nonfinite_steps: int = 0
    skipped_steps: int = 0


class Trainer:
    """Trains one experiment in this process (one rank of the job).

    Args:
        cfg: The experiment.
        run_dir: The run folder (checkpoints, metrics, logs).
        model_factory: Builds the model afresh (a new stage starts from a new module
            holding the current weights, so no optimiser hooks survive a stage change).
        loss_fn: ``(output, batch) -> (loss, parts)``.
        train_data: The training stream of this rank.
        val_data: The validation stream, or None.
        layout: This process's place in the job.
        device: Where to compute.
        trust_checkpoint: Read the run's checkpoint files with full unpickling (the
            user's ``--trust-checkpoint``); else weights-only with fpar's allow-list.
    """

    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path,
                 model_factory: Callable[[], nn.Module], loss_fn: Callable,
                 train_data: Any, val_data: Any | None,
                 layout: distributed.DistEnv, device: torch.device,
                 trust_checkpoint: bool = False) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.model_factory = model_factory
        self.loss_fn = loss_fn
        self.train_data = train_data
        self.val_data = val_data
        self.layout = layout
        self.device = device
        self.state = TrainerState(data_seed=cfg.seed, world_size=layout.world_size,
                                  global_batch=cfg.data.batch_size * layout.world_size)
        self._samples_log = None
        if cfg.train.log_samples:
            (self.run_dir / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
            self._samples_log = open(self.run_dir / SAMPLES_DIR / f"rank{layout.rank}.jsonl", "a")
        self.checkpoints = ckpt.CheckpointManager(checkpoints_dir(self.run_dir), layout.rank,
                                                  cfg.train.keep_checkpoints, trust_checkpoint)
        self.accum = cfg.train.grad_accum_steps
        steps = train_data.steps_per_epoch // self.accum
        if cfg.train.max_steps_per_epoch:
            steps = min(steps, cfg.train.max_steps_per_epoch)
        if steps < 1:
            raise ValueError(
                f"{train_data.steps_per_epoch} batches per epoch cannot make one optimiser "
                f"step of {self.accum} accumulated batches; lower data.batch_size or "
                "train.grad_accum_steps, or add training samples")
        self.steps_per_epoch = steps
        self.engine = self.scheduler = None
        self.stage_index = -1
        self.dtype = torch.float32
        self._consecutive_bad = 0
        self.log = RunLog(self.run_dir, layout.is_main,
                          steps * cfg.train.total_epochs, cfg.train.log_every_steps)

    # ----------------------------------------------------------------- set-up
    def stage_of_epoch(self, epoch: int) -> int:
        """Index of the stage that trains ``epoch``."""
        end = 0
        for index, stage in enumerate(self.cfg.train.stages):
            end += stage.epochs
            if epoch < end:
                return index
        return len(self.cfg.train.stages) - 1

    def _build_engine(self, stage_index: int, weights: dict | None) -> None:
        """Builds a fresh module and DeepSpeed engine for a stage."""
        self._release_engine()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)  # same initial weights on every rank
            model = self.model_factory()
        if weights is not None:
            model.load_state_dict(weights)
        stage = self.cfg.train.stages[stage_index]
        groups = stage_param_groups(model, self.cfg.optim, stage)
        optimizer = build_adam(groups, self.cfg.optim)
        ds_config = deepspeed_setup.build_ds_config(
            self.cfg.train.precision, self.cfg.train.zero_stage, self.cfg.data.batch_size,
            self.accum, self.cfg.train.grad_clip)
        self.engine, self.scheduler = deepspeed_setup.initialize(
            model, optimizer, ds_config,
            scheduler_factory(self.cfg.optim, stage, self.steps_per_epoch))
        self.dtype = deepspeed_setup.engine_dtype(self.engine)
        self.stage_index = stage_index
        self.state.stage = stage_index
        self.group_names = [g["name"] for g in groups]
        self._skipped_seen = self.engine.skipped_steps
        log.info("stage %d '%s': training %s for %d epoch(s)", stage_index, stage.name,
                 ", ".join(self.group_names), stage.epochs)

    def _weights(self) -> dict:
        """The current module weights in fp32 on the CPU."""
        return {k: v.detach().float().cpu().clone() if v.is_floating_point() else v.cpu()
                for k, v in self.engine.module.state_dict().items()}

    def _restore(self) -> bool:
        """Loads the newest complete checkpoint of the run, if any."""
        tag = ckpt.latest_tag(self.checkpoints.root)
        if tag is None:
            return False
        saved = ckpt.read_trainer_state(self.checkpoints.root / tag)
        self.checkpoints.check(tag)  # before any of it is used
        self._build_engine(int(saved["stage"]), None)
        restored = self.checkpoints.load(self.engine, tag)
        self.state = TrainerState(**restored)
        global_batch = self.cfg.data.batch_size * self.layout.world_size
        if self.state.world_size != self.layout.world_size:
            same = self.state.global_batch == global_batch
            (log.info if same else log.warning)(
                "checkpoint %s was written by %d rank(s), resuming on %d with %s global batch (%d): "
                "%s", tag, self.state.world_size, self.layout.world_size, "the same" if same else "another",
                global_batch, "the epoch's sample sequence continues" if same else "the data order changes")
            self.state.world_size = self.layout.world_size
        self.state.global_batch = global_batch
        log.info("resumed from %s: step %d, epoch %d, step %d of the epoch", tag,
                 self.state.step, self.state.epoch, self.state.step_in_epoch)
        self.log.event("resume", tag=tag, step=self.state.step, epoch=self.state.epoch)
        return True

    # ----------------------------------------------------------------- training
    def fit(self, resume_required: bool = False) -> dict[str, Any]:
        """Trains every stage to the end (or until preempted).

        Args:
            resume_required: Refuse to start from scratch when no checkpoint exists.

        Returns:
            A summary: final step, epochs, best score, counts of bad steps.

        Raises:
            preemption.Preempted: After saving, when preemption was requested.
            NonFiniteError: After ``train.max_nonfinite_steps`` bad steps in a row.
        """
        if not self._restore():
            if resume_required:
                raise FileNotFoundError(f"{self.checkpoints.root}: no complete checkpoint "
                                        "to resume from")
            self._build_engine(self.stage_of_epoch(0), None)
        # Per-rank random streams (dropout, ...) differ across ranks but follow the seed;
        # a resumed run already has the saved ones.
        if self.state.step == 0:
            seed_everything(self.cfg.seed * 1000 + 1 + self.layout.rank)
        self.log.start(self.state.step)
        total = self.cfg.train.total_epochs
        try:
            while self.state.epoch < total and not self._reached_max_steps():
                stage_index = self.stage_of_epoch(self.state.epoch)
                if stage_index != self.stage_index:
                    self._build_engine(stage_index, self._weights())
                    self.log.event("stage", stage=stage_index, step=self.state.step)
                if not self._train_epoch(self.state.epoch):
                    break  # train.max_steps reached mid-epoch (checkpoint saved)
                report = self.train_data.epoch_report() if hasattr(
                    self.train_data, "epoch_report") else {}
                self.state.epoch += 1
                self.state.step_in_epoch = 0
                distributed.average_buffers(self.engine.module)
                val, is_best = self._maybe_validate(self.state.epoch)
                self.checkpoints.save(self.engine, dataclasses.asdict(self.state), best=is_best)
                self.log.epoch({"epoch": self.state.epoch - 1, "step": self.state.step,
                                "stage": self.stage_index, "data": report, "val": val})
        finally:
            self.log.close()
        return {"step": self.state.step, "epochs": self.state.epoch,
                "best_score": self.state.best_score, "nonfinite_steps": self.state.nonfinite_steps,
                "skipped_steps": self.state.skipped_steps,
                "last_checkpoint": ckpt.latest_tag(self.checkpoints.root),
                "best_checkpoint": self.checkpoints.best_tag()}

    def _reached_max_steps(self) -> bool:
        return bool(self.cfg.train.max_steps) and self.state.step >= self.cfg.train.max_steps

    def _train_epoch(self, epoch: int) -> bool:
        """Trains the rest of ``epoch``; False when ``train.max_steps`` stopped it early."""
        self.engine.train()
        start = self.state.step_in_epoch
        batches = iter(self.train_data.epoch_batches(epoch, start_step=start * self.accum))
        every = self.cfg.train.checkpoint_every_steps
        for _ in range(start, self.steps_per_epoch):
            stop = self._train_step(epoch, batches)
            periodic = every and self.state.step % every == 0 and \
                self.state.step_in_epoch < self.steps_per_epoch  # else the epoch end saves
            limit = self._reached_max_steps() and self.state.step_in_epoch < self.steps_per_epoch
            if stop or periodic or limit:
                distributed.average_buffers(self.engine.module)
                tag = self.checkpoints.save(self.engine, dataclasses.asdict(self.state))
                if stop:
                    raise preemption.Preempted(tag, self.state.step)
            if limit:
                log.info("train.max_steps=%d reached (checkpoint %s)", self.cfg.train.max_steps, tag)
                return False
        return True

    def _train_step(self, epoch: int, batches) -> bool:
        """One optimiser step (``accum`` micro-batches); returns True if ranks must stop."""
        t_start = time.monotonic()
        data_time = compute_time = 0.0
        sums: dict[str, float] = {}
        bad_loss = False
        stop = False
        norm_before = None
        clips = 0
        for micro in range(self.accum):
            t0 = time.monotonic()
            batch = next(batches)
            if self._samples_log is not None:
                repeat = batch.get("is_repeat")
                ids = [s for i, s in enumerate(batch.get("segment_id", ()))
                       if repeat is None or not bool(repeat[i])]
                self._samples_log.write(json.dumps({"step": self.state.step, "epoch": epoch,
                                                    "micro": micro, "segments": ids}) + "\n")
                self._samples_log.flush()
            batch = prepare_batch(batch, self.device, self.dtype)
            t1 = time.monotonic()
            output = self.engine(batch)
            loss, parts = self.loss_fn(output, batch)
            # parts['loss'] is the total, reduced on its own below.
            names = sorted(k for k in parts if k != "loss")
            finite = bool(torch.isfinite(loss.detach()).item())
            # One collective per micro-batch: loss parts, the non-finite flag, preemption.
            reduced = distributed.all_reduce_sum(
                [float(loss.item()) if finite else 0.0]
                + [float(parts[n]) if finite else 0.0 for n in names]
                + [0.0 if finite else 1.0, 1.0 if preemption.requested() else 0.0])
            world = self.layout.world_size
            any_bad = reduced[-2] > 0
            stop = stop or reduced[-1] > 0
            if any_bad:
                bad_loss = True
                if self.accum > 1:
                    # Keep DeepSpeed's accumulation in step on every rank with a zero loss.
                    zero = sum(p.sum() for p in self.engine.module.parameters()
                               if p.requires_grad) * 0.0
                    deepspeed_setup.backward(self.engine, zero)
                    self.engine.step()
            else:
                sums["loss"] = sums.get("loss", 0.0) + reduced[0] / world
                for n, value in zip(names, reduced[1:-2]):
                    sums[n] = sums.get(n, 0.0) + value / world
                deepspeed_setup.backward(self.engine, loss)
                if self.cfg.train.zero_stage == 0 and \
                        self.engine.is_gradient_accumulation_boundary():
                    norm_before = deepspeed_setup.local_grad_norm(self.engine.module)
                self.engine.step()
            clips += len(batch.get("segment_id", ())) or self.cfg.data.batch_size
            data_time += t1 - t0
            compute_time += time.monotonic() - t1
        norm = None if bad_loss and self.accum == 1 else deepspeed_setup.grad_norm(
            self.engine, norm_before)
        skipped = self.engine.skipped_steps - self._skipped_seen
        self._skipped_seen = self.engine.skipped_steps
        self.state.skipped_steps += skipped
        bad = bad_loss or skipped > 0 or (norm is not None and not math.isfinite(norm))
        self.state.step += 1
        self.state.step_in_epoch += 1
        self.state.consumed_samples += clips * self.layout.world_size
        count = max(1, self.accum - (1 if bad_loss else 0))
        record = {"step": self.state.step, "epoch": epoch, "stage": self.stage_index,
                  "loss": sums["loss"] / count if "loss" in sums else None,
                  "parts": {k: v / count for k, v in sums.items() if k != "loss"},
                  "lr": {n: g["lr"] for n, g in zip(self.group_names,
                                                    self.engine.optimizer.param_groups)},
                  "grad_norm": norm, "data_time": data_time, "compute_time": compute_time,
                  "step_time": time.monotonic() - t_start,
                  "clips": clips * self.layout.world_size, "nonfinite": bad,
                  "skipped": skipped, "loss_scale": deepspeed_setup.loss_scale(self.engine)}
        self.log.step(record)
        self._check_finite(bad, record)
        return stop

    def _check_finite(self, bad: bool, record: dict) -> None:
        if not bad:
            self._consecutive_bad = 0
            return
        self._consecutive_bad += 1
        self.state.nonfinite_steps += 1
        limit = self.cfg.train.max_nonfinite_steps
        log.warning("step %d: non-finite loss or gradient (loss %s, grad norm %s, DeepSpeed "
                    "skipped %d); %d in a row of at most %d", record["step"], record["loss"],
                    record["grad_norm"], record["skipped"], self._consecutive_bad, limit)
        self.log.event("nonfinite", step=record["step"], consecutive=self._consecutive_bad)
        if self._consecutive_bad >= limit:
            raise NonFiniteError(
                f"stopping at step {record['step']} (epoch {record['epoch']}): {limit} "
                f"consecutive steps had a non-finite loss or gradient norm (last loss parts "
                f"{record['parts']}, grad norm {record['grad_norm']}); lower the learning "
                "rate, enable train.grad_clip or check the input data")

    # ----------------------------------------------------------------- evaluation
    def _maybe_validate(self, epochs_done: int) -> tuple[dict[str, float], bool]:
        every = self.cfg.eval.validate_every_epochs
        if self.val_data is None or not every or epochs_done % every:
            return {}, False
        _, logits, labels = self.predict(self.val_data)
        metrics = top1_metrics(logits, labels)
        score = metrics.get(self.cfg.eval.best_metric)
        if score is None:
            log.warning("validation gave no '%s' (have %s); the best checkpoint is not "
                        "tracked", self.cfg.eval.best_metric, sorted(metrics))
            return metrics, False
        is_best = self.state.best_score is None or score > self.state.best_score
        if is_best:
            self.state.best_score = score
        return metrics, is_best

    def predict(self, stream, views: tuple = (), aggregate: str = "prob",
                progress: bool = False, ms_tally=None) -> tuple[list[str], dict, dict]:
        """Scores every segment of ``stream`` once (rows gathered from all ranks), from
        its test-time ``views`` (default: one); adds the motion targets and MS predictions
        to ``ms_tally`` when given."""
        distributed.average_buffers(self.engine.module)
        self.engine.eval()
        try:
            return predict_stream(self.engine, stream, self.device, self.dtype, views,
                                  aggregate, progress, ms_tally)
        finally:
            self.engine.train()

    def use_best_weights(self) -> None:
        """Loads the best validation checkpoint's weights into the engine, if there is one."""
        tag = self.checkpoints.best_tag()
        if tag is not None and tag != ckpt.latest_tag(self.checkpoints.root):
            self.checkpoints.load_module(self.engine, tag)

    def close(self) -> None:
        """Releases the engine (and with it, its process groups: see ``teardown``)."""
        if self._samples_log is not None:
            self._samples_log.close()
            self._samples_log = None
        self._release_engine()

    def _release_engine(self) -> None:
        # The scheduler holds the optimizer, which holds the engine through its hooks.
        if self.engine is not None:
            deepspeed_setup.release(self.engine)
            self.engine = self.scheduler = None
            gc.collect()
