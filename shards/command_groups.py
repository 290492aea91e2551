"""Command groups of the ``fpar`` command line that modules on several floors add to.

``fpar data summary`` comes from the annotation readers (:mod:`shards.annotations.cli`),
``fpar data check`` from the data pipeline (:mod:`fpar.data.cli`): both join one group.
"""

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
