"""Helpers for the subcommand modules of the ``fpar`` command line."""

from __future__ import annotations

import argparse

#: The opt-in to read checkpoint files with full unpickling (:mod:`fpar.engine.checkpoint_files`).
TRUST_CHECKPOINT = "--trust-checkpoint"


def add_trust_checkpoint(parser: argparse.ArgumentParser) -> None:
    """Adds ``--trust-checkpoint`` to a command that reads checkpoints."""
    parser.add_argument(
        TRUST_CHECKPOINT, action="store_true",
        help="read checkpoint files with full unpickling, which runs any code they carry: only "
        "for a checkpoint you made or trust (older fpar checkpoints need it for their RNG "
        "files); default: weights-only, refusing any type fpar and DeepSpeed do not write")
