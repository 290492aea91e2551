"""Atomic checkpoints: only complete ones count, the last k are kept.

Layout under ``<run_dir>/checkpoints``::

    step00000120/              one checkpoint (tag), written by every rank
        ...                    DeepSpeed's model and optimiser states
        trainer_state.json     step, epoch, stage, data seed ... (rank 0)
        rng_rank<r>.pt         python, numpy and torch RNG states of rank r (tensors only)
        saving.json            written by rank 0 before the others: fpar made this folder
        complete.json          written by rank 0 after every rank finished: the tag counts
    latest                     name of the newest complete tag, written last
    best                       name of the tag with the best validation score

A run killed while saving leaves a tag without ``complete.json``; it is ignored and
removed by the next prune. The tag a run resumed from is never removed by that run. Pruning
removes only folders named like a tag that hold one of fpar's two markers: anything else
under ``checkpoints/`` is the user's. Every file is read through
:mod:`fpar.engine.checkpoint_files` (weights-only unless the user trusts the checkpoint).
"""

from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fpar.engine import distributed
from fpar.engine.checkpoint_files import (
    CheckpointRefused,
    check_files,
    checkpoint_files,
    files_of_rank,
    load_file,
    weights_only_loads,
)
from fpar.run_layout import BEST, LATEST
from shards.files import atomic_write_json, atomic_write_text, read_json

log = logging.getLogger(__name__)

COMPLETE = "complete.json"
SAVING = "saving.json"
TAG_PATTERN = re.compile(r"step\d{8}")
STATE = "trainer_state.json"


def step_tag(step: int) -> str:
    """The tag of the checkpoint taken after ``step`` optimiser steps."""
    return f"step{step:08d}"


def rng_state() -> dict[str, Any]:
    """This process's RNG states (python, numpy, torch CPU and CUDA) as tensors and numbers.

    Tensors, ints and strings only, so the file reads with the weights-only unpickler.
    """
    version, internal, gauss = random.getstate()
    numpy = np.random.get_state(legacy=False)
    state = {"python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                        "gauss": gauss},
             "numpy": {"bit_generator": numpy["bit_generator"],
                       "key": torch.from_numpy(numpy["state"]["key"].astype(np.int64)),
                       "pos": int(numpy["state"]["pos"]), "has_gauss": int(numpy["has_gauss"]),
                       "gauss": float(numpy["gauss"])},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores states saved by ``rng_state`` (or by older fpar, as python/numpy objects)."""
    python = state["python"]
    if isinstance(python, dict):
        python = (python["version"], tuple(int(v) for v in python["internal"].tolist()),
                  python["gauss"])
    random.setstate(python)
    numpy = state["numpy"]
    if isinstance(numpy, dict):
        numpy = {"bit_generator": numpy["bit_generator"],
                 "state": {"key": numpy["key"].numpy().astype(np.uint32), "pos": numpy["pos"]},
                 "has_gauss": numpy["has_gauss"], "gauss": numpy["gauss"]}
    np.random.set_state(numpy)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def is_complete(tag_dir: Path) -> bool:
    """True if every rank finished writing the checkpoint in ``tag_dir``."""
    return (tag_dir / COMPLETE).is_file()


def latest_tag(root: str | Path) -> str | None:
    """The newest complete checkpoint under ``root``, or None.

    Falls back to the newest complete tag when ``latest`` is missing or names an
    incomplete one (a crash between the two writes).
    """
    root = Path(root)
    tag = read_pointer(root / LATEST)
    if tag and is_complete(root / tag):
        return tag
    tags = complete_tags(root)
    return tags[-1] if tags else None


def read_pointer(path: Path) -> str | None:
    """The tag a pointer file names, if it names one (a tag name, not a path)."""
    if not path.is_file():
        return None
    tag = path.read_text().strip()
    return tag if TAG_PATTERN.fullmatch(tag) else None


def complete_tags(root: str | Path) -> list[str]:
    """Complete tags under ``root``, oldest step first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if TAG_PATTERN.fullmatch(path.name) and path.is_dir() and is_complete(path):
            found.append((int(read_json(path / COMPLETE).get("step", -1)), path.name))
    return [tag for _, tag in sorted(found)]


def read_trainer_state(tag_dir: str | Path) -> dict[str, Any]:
    """The trainer state saved with a complete checkpoint."""
    tag_dir = Path(tag_dir)
    if not is_complete(tag_dir):
        raise FileNotFoundError(f"{tag_dir}: not a complete checkpoint (no {COMPLETE})")
    return read_json(tag_dir / STATE)


class CheckpointManager:
    """Saves, finds, loads and prunes the checkpoints of one run.

    Args:
        root: The run's checkpoint folder.
        rank: This process's global rank (rank 0 writes the shared files).
        keep: How many recent complete checkpoints to keep (at least 2).
        trust: Read the files with full unpickling (the user's ``--trust-checkpoint``).
    """

    def __init__(self, root: str | Path, rank: int, keep: int = 2, trust: bool = False) -> None:
        self.root = Path(root)
        self.rank = rank
        self.keep = max(2, keep)
        self.trust = trust
        self.protected: str | None = None
        self._checked: set[str] = set()

    def save(self, engine, state: dict[str, Any], best: bool = False) -> str:
        """Saves a checkpoint; every rank must call it.

        Args:
            engine: The DeepSpeed engine.
            state: Trainer state (JSON-serialisable, ``step`` included).
            best: Also record it as the best checkpoint so far.

        Returns:
            The tag.
        """
        tag = step_tag(int(state["step"]))
        tag_dir = self.root / tag
        if is_complete(tag_dir):
            # Same step, same weights (e.g. preempted on an epoch's last step, then the
            # epoch-end save after resuming): only the trainer's bookkeeping moves on.
            torch.save(rng_state(), tag_dir / f"rng_rank{self.rank}.pt")
            if self.rank == 0:
                atomic_write_json(tag_dir / STATE, state)
                if best:
                    self._mark_best(tag)
            distributed.barrier()
            return tag
        if self.rank == 0:
            tag_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(tag_dir / SAVING, {"step": int(state["step"])})
        distributed.barrier()
        engine.save_checkpoint(str(self.root), tag=tag, save_latest=False)
        torch.save(rng_state(), tag_dir / f"rng_rank{self.rank}.pt")
        if self.rank == 0:
            atomic_write_json(tag_dir / STATE, state)
        distributed.barrier()
        if self.rank == 0:
            atomic_write_json(tag_dir / COMPLETE, {"step": int(state["step"]),
                                                   "world_size": state.get("world_size")})
            atomic_write_text(self.root / LATEST, tag + "\n")
            if best:
                self._mark_best(tag)
            self._prune()
        distributed.barrier()
        return tag

    def _mark_best(self, tag: str) -> None:
        if self.rank == 0:
            atomic_write_text(self.root / BEST, tag + "\n")

    def best_tag(self) -> str | None:
        """The tag recorded as best, if it is complete."""
        tag = read_pointer(self.root / BEST)
        return tag if tag and is_complete(self.root / tag) else None

    def _prune(self) -> None:
        """Removes fpar's own tags beyond the kept ones; nothing else under ``root``."""
        complete = complete_tags(self.root)
        keep = set(complete[-self.keep:])
        keep.update(t for t in (self.best_tag(), self.protected) if t)
        for path in self.root.iterdir():
            if path.name in keep or not TAG_PATTERN.fullmatch(path.name) or path.is_symlink() \
                    or not path.is_dir():
                continue
            if (path / COMPLETE).is_file() or (path / SAVING).is_file():
                shutil.rmtree(path, ignore_errors=True)

    def check(self, tag: str) -> None:
        """Reads every file of ``tag`` weights-only before anything of it is used.

        Each rank reads the shared files and its share of the per-rank ones; a refusal on
        any rank stops every rank with the same message.

        Raises:
            CheckpointRefused: Naming the file, the type it needs and the opt-in.
        """
        if self.trust:
            if tag not in self._checked:
                log.warning("%s: read with full unpickling (--trust-checkpoint)", self.root / tag)
            self._checked.add(tag)
            return
        if tag in self._checked:
            return
        world = max(1, distributed.read_env().world_size)
        problem = None
        try:
            check_files(files_of_rank(checkpoint_files(self.root / tag), self.rank, world))
        except CheckpointRefused as err:
            problem = str(err)
        problems = [p for p in distributed.gather_objects(problem) if p]
        if problems:
            raise CheckpointRefused(problems[0])
        self._checked.add(tag)

    def load_module(self, engine, tag: str) -> None:
        """Loads only the weights of ``tag`` into the engine (no optimiser, no RNG)."""
        self.check(tag)
        with weights_only_loads(self.trust):
            engine.load_checkpoint(str(self.root), tag=tag, load_optimizer_states=False,
                                   load_lr_scheduler_states=False)

    def load(self, engine, tag: str, load_optimizer: bool = True) -> dict[str, Any]:
        """Restores engine state and this rank's RNG states from ``tag``.

        Args:
            engine: The DeepSpeed engine built for the checkpoint's stage.
            tag: A complete tag under ``root``.
            load_optimizer: False when the checkpoint ends a stage and the new stage's
                optimiser starts fresh.

        Returns:
            The trainer state.
        """
        tag_dir = self.root / tag
        state = read_trainer_state(tag_dir)
        self.check(tag)
        with weights_only_loads(self.trust):
            path, _ = engine.load_checkpoint(
                str(self.root), tag=tag, load_optimizer_states=load_optimizer,
                load_lr_scheduler_states=load_optimizer, load_module_strict=True)
        if path is None:
            raise RuntimeError(f"{tag_dir}: DeepSpeed could not load this checkpoint")
        rng_file = tag_dir / f"rng_rank{self.rank}.pt"
        if rng_file.is_file():
            set_rng_state(load_file(rng_file, self.trust))
        else:
            log.warning("%s: no RNG state for rank %d (saved with %s ranks); "
                        "random streams will differ from the uninterrupted run",
                        tag_dir, self.rank, state.get("world_size"))
        self.protected = tag
        return state
