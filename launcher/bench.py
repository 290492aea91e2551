"""``fpar bench NAME [--json]``: run a named benchmark and print what it measured.

A benchmark is a module with ``DESCRIPTION`` (one line), ``add_arguments(parser)`` (its own
options) and ``run(args) -> dict`` (the figures). Adding one is one line in ``BENCHMARKS``.
Keep those modules cheap to import: heavy imports belong inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import json

BENCHMARKS: dict[str, str] = {
    "shards": "shards.bench",
    "loader": "launcher.benchmarks.loader",
    "train": "launcher.benchmarks.train",
    "scale": "launcher.benchmarks.scale",
    "accuracy": "launcher.benchmarks.accuracy",
    "gpu": "launcher.benchmarks.gpu",
}


def register(subparsers) -> None:
    """Adds ``fpar bench`` with one sub-command per registered benchmark."""
    parser = subparsers.add_parser(
        "bench", help="measure the speed of a part of the system",
        description="Run a benchmark and print its figures (human-readable, or JSON with --json).",
    )
    sub = parser.add_subparsers(dest="benchmark", metavar="NAME")
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        bench = sub.add_parser(name, help=module.DESCRIPTION, description=module.DESCRIPTION)
        bench.add_argument("--json", action="store_true", help="print the results as JSON")
        module.add_arguments(bench)
        bench.set_defaults(func=lambda args, module=module: _run(module, args))
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _run(module, args: argparse.Namespace) -> int:
    from launcher.benchmarks.machine import machine_info

    # Every benchmark's figures name the machine that produced them.
    results = module.run(args) | {"machine": machine_info()}
    if args.json:
        print(json.dumps(results))  # one line: easy to append to a log and parse back
    else:
        for line in format_results(results):
            print(line)
    return 0


def format_results(results: dict, indent: str = "") -> list[str]:
    """Nested result dicts as indented ``key: value`` lines (floats to 4 significant digits)."""
    lines = []
    for key, value in results.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.extend(format_results(value, indent + "  "))
        else:
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"{indent}{key}: {text}")
    return lines
