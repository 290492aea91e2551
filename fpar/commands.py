"""Helpers for the subcommand modules of the ``fpar`` command line."""

from __future__ import annotations

import argparse


def command_group(subparsers: argparse._SubParsersAction, name: str, help: str,
                  description: str) -> argparse._SubParsersAction:
    """The subparsers of the group ``fpar NAME``, created by whichever module comes first.

    Several modules add commands to one group (``fpar data summary`` from the readers,
    ``fpar data check`` from the data pipeline); the first to register creates it.
    """
    existing = subparsers.choices.get(name)
    if existing is not None:
        for action in existing._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action
        return existing.add_subparsers(dest=f"{name}_command", metavar=f"{name.upper()}_COMMAND")
    group = subparsers.add_parser(name, help=help, description=description)
    group.set_defaults(func=lambda _args: (group.print_help(), 2)[1])
    return group.add_subparsers(dest=f"{name}_command", metavar=f"{name.upper()}_COMMAND")


def data_group(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The subparsers of ``fpar data`` (annotation summaries, shard checks)."""
    return command_group(subparsers, "data", "inspect datasets and shard folders",
                         "Inspect annotation files and shard folders.")


#: The opt-in to read checkpoint files with full unpickling (:mod:`fpar.engine.checkpoint_files`).
TRUST_CHECKPOINT = "--trust-checkpoint"


def add_trust_checkpoint(parser: argparse.ArgumentParser) -> None:
    """Adds ``--trust-checkpoint`` to a command that reads checkpoints."""
    parser.add_argument(
        TRUST_CHECKPOINT, action="store_true",
        help="read checkpoint files with full unpickling, which runs any code they carry: only "
        "for a checkpoint you made or trust (older fpar checkpoints need it for their RNG "
        "files); default: weights-only, refusing any type fpar and DeepSpeed do not write")
