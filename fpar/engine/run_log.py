"""What a run reports from rank 0: progress, ``metrics.jsonl``, TensorBoard and ``log.txt``.

On a terminal a tqdm bar shows steps/s, clips/s, data vs compute time, loss, lr and ETA;
elsewhere (batch jobs) the same figures go out as plain log lines every few steps. Other
ranks report nothing but warnings.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from fpar.run_layout import METRICS_LOG, TENSORBOARD_DIR

log = logging.getLogger("fpar.train")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def attach_log_file(path: str | Path) -> logging.Handler:
    """Copies every fpar log record into ``path`` (appending) and returns the handler."""
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%Y-%m-%d %H:%M:%S"))
    logger = logging.getLogger("fpar")
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


class RunLog:
    """Rank 0's reporting of one run (a no-op on the other ranks).

    Args:
        run_dir: The run folder (``metrics.jsonl`` and ``tensorboard/`` go there).
        enabled: True on rank 0.
        total_steps: Optimiser steps of the whole run, for the ETA.
        log_every: Steps between plain lines and TensorBoard points.
        progress: Force the tqdm bar on or off (default: on when stderr is a terminal).
    """

    def __init__(self, run_dir: str | Path, enabled: bool, total_steps: int,
                 log_every: int = 10, progress: bool | None = None) -> None:
        self.enabled = enabled
        self.total_steps = max(1, total_steps)
        self.log_every = max(1, log_every)
        self.metrics_path = Path(run_dir) / METRICS_LOG
        self._bar = None
        self._writer = None
        self._started = time.monotonic()
        self._start_step = 0
        if not enabled:
            return
        use_bar = sys.stderr.isatty() if progress is None else progress
        if use_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total_steps, unit="step", dynamic_ncols=True)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(Path(run_dir) / TENSORBOARD_DIR))
        except ImportError as err:  # the run goes on without TensorBoard
            log.warning("TensorBoard unavailable (%s); metrics.jsonl only", err)

    def start(self, step: int) -> None:
        """Marks where this process started counting (after a resume, not zero)."""
        self._start_step = step
        self._started = time.monotonic()
        if self._bar is not None:
            self._bar.n = step
            self._bar.refresh()

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def step(self, record: dict[str, Any]) -> None:
        """Reports one optimiser step (``step``, ``loss``, ``lr``, times, ...)."""
        if not self.enabled:
            return
        self._append({"kind": "step", **record})
        step = int(record["step"])
        elapsed = time.monotonic() - self._started
        done = max(1, step - self._start_step)
        rate = done / max(elapsed, 1e-9)
        eta = (self.total_steps - step) / max(rate, 1e-9)
        clips = record.get("clips", 0) / max(record.get("step_time", 0.0), 1e-9)
        lr = min(record["lr"].values()) if record.get("lr") else 0.0
        loss = float("nan") if record["loss"] is None else record["loss"]
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}",
                                  clips_s=f"{clips:.1f}", data_s=f"{record['data_time']:.2f}",
                                  compute_s=f"{record['compute_time']:.2f}", refresh=False)
        elif step % self.log_every == 0 or step == self.total_steps:
            log.info("step %d/%d epoch %d loss %.4f lr %.2e | %.2f steps/s %.1f clips/s "
                     "data %.2fs compute %.2fs | ETA %s", step, self.total_steps,
                     record["epoch"], loss, lr, rate, clips, record["data_time"],
                     record["compute_time"], _hms(eta))
        if self._writer is not None and step % self.log_every == 0 and record["loss"] is not None:
            self._writer.add_scalar("train/loss", record["loss"], step)
            for name, value in record.get("parts", {}).items():
                self._writer.add_scalar(f"train/{name}", value, step)
            for name, value in record.get("lr", {}).items():
                self._writer.add_scalar(f"lr/{name}", value, step)
            if record.get("grad_norm") is not None:
                self._writer.add_scalar("train/grad_norm", record["grad_norm"], step)
            if record.get("loss_scale") is not None:
                self._writer.add_scalar("train/loss_scale", record["loss_scale"], step)

    def epoch(self, record: dict[str, Any]) -> None:
        """Reports an epoch's end (data report, validation metrics)."""
        if not self.enabled:
            return
        self._append({"kind": "epoch", **record})
        metrics = record.get("val", {})
        shown = " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        log.info("epoch %d done at step %d%s", record["epoch"], record["step"],
                 f" | val {shown}" if shown else "")
        if self._writer is not None:
            for name, value in metrics.items():
                if isinstance(value, (int, float)):
                    self._writer.add_scalar(f"val/{name}", value, record["step"])

    def event(self, kind: str, **fields: Any) -> None:
        """Records a one-off event (resume, stage change, non-finite step, ...)."""
        if self.enabled:
            self._append({"kind": kind, **fields})

    def close(self) -> None:
        """Closes the bar and the TensorBoard writer."""
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()


def _hms(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class SegmentProgress:
    """This rank's evaluation progress in segments/s: a tqdm bar on a terminal, else a
    log line every ``every_s`` seconds and one at the end.

    Args:
        total: Segments this rank scores.
        every_s: Seconds between plain log lines.
    """

    def __init__(self, total: int, every_s: float = 30.0) -> None:
        self.total, self.done, self.every_s = total, 0, every_s
        self._started = self._last = time.monotonic()
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="segment", desc="eval", dynamic_ncols=True)

    def rate(self) -> float:
        """Segments per second so far."""
        return self.done / max(time.monotonic() - self._started, 1e-9)

    def update(self, segments: int) -> None:
        """Counts ``segments`` more scored segments."""
        self.done += segments
        if self._bar is not None:
            self._bar.update(segments)
        elif time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            log.info("eval: %d/%d segments, %.2f segments/s", self.done, self.total, self.rate())

    def close(self) -> None:
        """Closes the bar and logs the pass's rate."""
        if self._bar is not None:
            self._bar.close()
        log.info("eval: %d segments in %.1f s, %.2f segments/s", self.done,
                 time.monotonic() - self._started, self.rate())
