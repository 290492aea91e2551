"""``fpar report RUN_DIR``: the HTML page with figures of a finished run."""

from __future__ import annotations

import argparse
import sys

from fpar.commands import add_trust_checkpoint


def register(subparsers) -> None:
    """Adds ``fpar report``."""
    parser = subparsers.add_parser(
        "report", help="write an HTML page with metrics and figures of a finished run",
        description="Write RUN_DIR/report/index.html (PNG figures beside it, relative links, "
        "no external assets): run and config summary, official metrics of every scored "
        "split, training curves, per-class accuracy and confusion matrices, seen vs unseen "
        "comparison, attention overlays and predicted vs target motion maps on a few clips. "
        "Figures that do not apply to the model are left out with a note.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder (holding config.yaml)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/report)")
    parser.add_argument("--samples", type=int, default=4, metavar="K",
                        help="clips per evaluated split run through the model for the "
                        "attention and motion-map figures (default 4; 0 = none)")
    parser.add_argument("--annotations", metavar="DIR",
                        help="annotation folder for every split (default: the one each "
                        "split's shard manifest records)")
    parser.add_argument("--root", metavar="DIR",
                        help="GTEA-61 frame root (default: the one the shard manifest records)")
    add_trust_checkpoint(parser)
    parser.set_defaults(func=report_main)


def report_main(args: argparse.Namespace) -> int:
    """Runs ``fpar report``: 0 when the page was written, 2 when the run cannot be read."""
    from fpar.engine.checkpoint_files import CheckpointRefused
    from fpar.report.assemble import make_report
    from fpar.report.collect import ReportError

    if args.samples < 0:
        print("fpar report: --samples must be >= 0", file=sys.stderr)
        return 2
    try:
        page = make_report(args.run_dir, out=args.out, samples=args.samples,
                           annotations=args.annotations, root=args.root,
                           trust_checkpoint=args.trust_checkpoint)
    except (ReportError, CheckpointRefused) as err:
        print(f"fpar report: {err}", file=sys.stderr)
        return 2
    print(page)
    return 0
