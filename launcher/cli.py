"""The ``fpar`` command: one entry point whose subcommands live beside the code they run.

Each module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its
subcommand(s) and sets ``func`` (called with the parsed arguments, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMAND_MODULES: list[str] = [  # in the order of the workflow, as --help lists them
    "launcher.demo",
    "shards.synth.cli",
    "shards.annotations.cli",
    "fpar.data.cli",
    "launcher.shards_cli",
    "fpar.models.cli",
    "launcher.train_cli",
    "fpar.evaluation.cli",
    "fpar.report.cli",
    "launcher.submit",
    "launcher.protocol_cli",
    "launcher.collect",
    "launcher.bench",
]


def build_parser() -> argparse.ArgumentParser:
    """Builds the ``fpar`` parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="fpar",
        description="First-person action recognition: synthetic kitchens, shards, "
        "training with DeepSpeed, evaluation and challenge submissions.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs ``fpar`` with ``argv`` (default: ``sys.argv[1:]``) and returns the exit code."""
    from shards.datasets import UnknownDataset

    try:
        parser = build_parser()
    except UnknownDataset as err:  # the --format choices come from the registry
        print(f"fpar: error: {err}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
