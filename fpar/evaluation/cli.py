"""``fpar metrics`` and ``fpar submission``: official numbers and challenge archives."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from fpar.evaluation.metrics import evaluate, format_report
from fpar.evaluation.scores import load_scores, merge_scores, read_views
from fpar.evaluation.submission import build_submission, write_archive
from fpar.evaluation.views import describe_views
from shards.datasets import dataset_names, get_dataset
from shards.files import atomic_write_json

log = logging.getLogger(__name__)


def _load(paths: list[Path], trust_pickle: bool):
    parts = [load_scores(p, trust_pickle=trust_pickle) for p in paths]
    return merge_scores(parts, [str(p) for p in paths])


def _add_trust_pickle(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-pickle", action="store_true",
        help="read the scores files with full unpickling, so that ids saved as Python "
        "objects (e.g. a pandas array) load; unpickling runs any code a file holds, so "
        "use it only for files you made or trust (better: save the ids with "
        "np.asarray(ids, dtype=str))",
    )


def _run_metrics(args: argparse.Namespace) -> int:
    try:
        ids, outputs = _load(args.scores, args.trust_pickle)
        result = evaluate(args.format, ids, outputs, args.annotations, args.split, root=args.root)
        views = {str(p): read_views(p, args.trust_pickle) for p in args.scores}
    except ValueError as err:  # ScoresError, EvaluationError and AnnotationError are ValueErrors
        print(f"fpar metrics: error: {err}", file=sys.stderr)
        return 1
    result["views"] = views
    if args.out:
        atomic_write_json(args.out, result)
    text = format_report(result) + "".join(f"\n{path}: scored from {describe_views(record)}"
                                           for path, record in views.items())
    print(json.dumps(result, indent=2) if args.json else text)
    return 0


def _run_submission(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    sls = {"sls_pt": args.sls_pt, "sls_tl": args.sls_tl, "sls_td": args.sls_td}
    try:
        ids, outputs = _load(args.scores, args.trust_pickle)
        files = build_submission(args.format, ids, outputs, args.test_timestamps, sls)
    except ValueError as err:
        print(f"fpar submission: error: {err}", file=sys.stderr)
        return 1
    out = write_archive(files, args.out)
    log.info("wrote %s (%s) in %.1f s", out, ", ".join(files), time.perf_counter() - started)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``metrics`` and ``submission`` subcommands."""
    metrics = subparsers.add_parser(
        "metrics",
        help="official metrics of a scores file against labelled annotations",
        description="Computes the official metrics of a dataset from scores files "
        "(torch.save dict: narration_id + verb_output/noun_output or class_output). "
        "EPIC-55: top-1/top-5 verb, noun, action and macro precision/recall over the "
        "many-shot classes present, per split (S1 seen, S2 unseen), and how many test-time "
        "views each scores file averages (its 'views' record). EPIC-100: top-1/top-5 "
        "overall, top-1 on unseen participants and on tail classes. GTEA-61/EGTEA: top-1, "
        "top-5, mean class accuracy, confusion matrix. Ties rank the lower class id first. "
        "Accuracies are in percent.",
    )
    metrics.add_argument(
        "scores", nargs="+", type=Path,
        help="scores file(s); several (e.g. S1 and S2) are joined, an id in two is an error",
    )
    metrics.add_argument("--format", required=True, choices=dataset_names(), help="dataset")
    metrics.add_argument(
        "--annotations", required=True, type=Path,
        help="annotation folder, or one split file by its dataset name (then that split "
        "is evaluated), e.g. EPIC_100_validation.csv; GTEA-61: the frame folder",
    )
    metrics.add_argument(
        "--split", action="append", default=None, metavar="NAME",
        help="split to evaluate, repeatable (default: every test split whose segments "
        "are all scored: s1/s2 for epic55, validation/test for epic100, test_split1-3 for "
        "egtea, test_fixed or test_loso1-4 for gtea61)",
    )
    metrics.add_argument(
        "--root", type=Path, default=None,
        help="GTEA-61 frame root when it differs from --annotations",
    )
    metrics.add_argument(
        "--json", action="store_true", help="print the full result as JSON (with confusion matrices)"
    )
    metrics.add_argument(
        "--out", type=Path, default=None, help="also write the JSON result to this file"
    )
    _add_trust_pickle(metrics)
    metrics.set_defaults(func=_run_metrics)

    submission = subparsers.add_parser(
        "submission",
        help="EPIC-KITCHENS challenge submission zip from scores files",
        description="Writes an EPIC-KITCHENS action recognition submission archive. "
        "epic55: seen.json (S1) and unseen.json (S2), version 0.1, verb/noun scores and "
        "the top-100 actions. epic100: test.json, version 0.2, with supervision levels. "
        "Every test segment must be scored exactly once and no other, with the dataset's "
        "class counts and finite scores; otherwise nothing is written.",
    )
    submission.add_argument(
        "scores", nargs="+", type=Path,
        help="scores file(s): for epic55 one holding S1 and S2 or one per split",
    )
    submission.add_argument("--format", required=True, help="challenge",
                            choices=[n for n in dataset_names() if get_dataset(n).submission is not None])
    submission.add_argument(
        "--test-timestamps", required=True, nargs="+", type=Path, metavar="FILE",
        help="test segment files: epic55 EPIC_test_s1_timestamps.csv and "
        "EPIC_test_s2_timestamps.csv; epic100 EPIC_100_test_timestamps.csv",
    )
    submission.add_argument("--out", required=True, type=Path, help="zip archive to write")
    for flag, what in (("pt", "pretraining"), ("tl", "training labels"), ("td", "training data")):
        submission.add_argument(
            f"--sls-{flag}", type=int, default=None, metavar="N",
            help=f"epic100: supervision level for {what}, 0-5 (required for epic100)",
        )
    _add_trust_pickle(submission)
    submission.set_defaults(func=_run_submission)
