"""``fpar synth``: generate a synthetic-kitchens dataset in a real dataset's layout."""

from __future__ import annotations

import argparse
import logging

from shards.datasets import dataset_names, get_dataset
from shards.synth.generate import generate
from shards.synth.plan import X264_PRESETS, Options

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``synth`` subcommand."""
    d = Options()
    p = subparsers.add_parser(
        "synth",
        help="generate synthetic kitchens (videos + annotations in a dataset's real format)",
        description="Generates synthetic kitchens: H.264 videos (GTEA-61: PNG frame folders) "
        "of a head-mounted camera over per-participant kitchens, where the noun is the moving "
        "object's shape and colour and the verb is how it moves relative to the kitchen; "
        "annotation files in the chosen dataset's real names and columns; and the true "
        "moving-object masks (masks/<video_id>.npz). Same seed, same annotation bytes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--format", required=True, choices=[n for n in dataset_names() if get_dataset(n).synth is not None], dest="fmt",
                   help="dataset layout and annotation format to write")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--participants", type=int, default=4,
                   help="participants (one kitchen each); GTEA-61: at most 4 subjects S1..S4")
    p.add_argument("--segments", type=int, default=40, help="total labelled segments")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--width", type=int, default=d.width, help="frame width (even)")
    p.add_argument("--height", type=int, default=d.height, help="frame height (even)")
    p.add_argument("--fps", type=parse_rates, default=None,
                   help="frame rate, or comma-separated rates given to the videos in turn "
                   "(EPIC formats, e.g. 29.97,47.95,50,59.94,90) (default: 29.97 for EPIC formats, "
                   "24 for EGTEA and GTEA-61, whose readers assume 24); 59.94 is written as "
                   "60000/1001 like EPIC's videos. EPIC annotations number frames as the public "
                   "frame release does (60 fps; EPIC-100's 50 fps videos: 50) whatever the rate")
    p.add_argument("--unseen-fraction", type=float, default=d.unseen_fraction,
                   help="last fraction of participants kept for unseen-kitchen splits only "
                   "(EPIC-55 S2; EPIC-100 unseen validation/test participants)")
    p.add_argument("--test-fraction", type=float, default=d.test_fraction,
                   help="share of a seen participant's segments in test videos (EPIC-55 S1; "
                   "EPIC-100: half validation, half test)")
    p.add_argument("--min-seconds", type=float, default=d.min_seconds, help="shortest segment")
    p.add_argument("--max-seconds", type=float, default=d.max_seconds, help="longest segment")
    p.add_argument("--min-gap", type=float, default=d.min_gap,
                   help="shortest pause (s) between segments of a video")
    p.add_argument("--max-gap", type=float, default=d.max_gap,
                   help="longest pause (s) between segments of a video")
    p.add_argument("--segments-per-video", type=int, default=d.segments_per_video,
                   help="most segments in one video (session)")
    p.add_argument("--camera-speed", type=float, default=d.camera_speed,
                   help="RMS pan speed of the head-mounted camera, px/s at a 256-px-high frame")
    p.add_argument("--camera-follow", type=float, default=d.camera_follow,
                   help="share (0..1) of the handled object's motion the head follows, with "
                   "a 0.15 s lag: 1 keeps the object centred and moves the kitchen behind it")
    p.add_argument("--stroke-fill", type=float, default=d.stroke_fill,
                   help="least share of its segment a one-way motion (take, put, move, open, "
                   "close) takes; otherwise a 0.7-1.5 s stroke")
    p.add_argument("--max-cycles", type=float, default=d.max_cycles,
                   help="most shake/stir oscillations per segment (7 sampled frames tell at "
                   "most 3 apart)")
    p.add_argument("--hands", type=int, choices=(0, 1, 2), default=d.hands,
                   help="the wearer's arms, entering from the lower edge with the "
                   "participant's skin tone: 1 = the hand that reaches for the acting object, "
                   "holds it while it moves and withdraws (in the masks while it moves); 2 = "
                   "also the free hand, resting still elsewhere in half of the segments; 0 = "
                   "none (the kitchens before hands)")
    p.add_argument("--no-masks", dest="masks", action="store_false",
                   help="do not write the moving-object masks")
    p.add_argument("--crf", type=int, default=d.crf,
                   help="x264 quality (0..51, lower = better and bigger)")
    p.add_argument("--preset", default=d.preset, choices=X264_PRESETS, help="x264 speed preset")
    p.add_argument("--workers", type=int, default=d.workers, help="parallel video renderers")
    p.set_defaults(func=run)


def parse_rates(text: str) -> float | tuple[float, ...]:
    """``30`` -> 30.0; ``29.97,90`` -> (29.97, 90.0)."""
    try:
        rates = tuple(float(part) for part in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a frame rate or list of rates: {text!r}") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError(f"frame rates must be positive: {text!r}")
    return rates[0] if len(rates) == 1 else rates


def run(args: argparse.Namespace) -> int:
    """Runs ``fpar synth``; returns the exit code."""
    options = {k: getattr(args, k) for k in Options.__dataclass_fields__}
    try:
        out = generate(args.fmt, args.out, args.participants, args.segments, args.seed,
                       progress=True, **options)
    except ValueError as err:
        log.error("%s", err)
        return 2
    log.info("wrote %s", out)
    return 0
