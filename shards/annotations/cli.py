"""``fpar data summary``: what a dataset's annotation files hold, split by split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from shards.command_groups import data_group
from shards.datasets import dataset_names, get_dataset
from shards.annotations import (
    LABEL_MISSING,
    AnnotationError,
    available_splits,
    load_segments,
)
from shards.command_groups import data_group

# Splits with at most this many participants list them in the human-readable table.
LIST_PARTICIPANTS_UP_TO = 8


def _distinct(values: pd.Series) -> int | None:
    """How many distinct labels are used; None when no row carries that label."""
    used = values[values != LABEL_MISSING]
    return int(used.nunique()) if len(used) else None


def split_summary(table: pd.DataFrame) -> dict:
    """Counts of one split's segment table: segments, participants, videos, classes used."""
    labelled_pairs = table[
        (table["verb_class"] != LABEL_MISSING) & (table["noun_class"] != LABEL_MISSING)
    ]
    has_labels = bool(
        (table[["verb_class", "noun_class", "class_id"]] != LABEL_MISSING).any(axis=None)
    )
    return {
        "segments": int(len(table)),
        "participants": int(table["participant"].nunique()),
        "participant_ids": sorted(table["participant"].unique().tolist()),
        "videos": int(table["video_id"].nunique()),
        "frames": int((table["stop_frame"] - table["start_frame"] + 1).sum()),
        "labelled": has_labels,
        "verb_classes": _distinct(table["verb_class"]),
        "noun_classes": _distinct(table["noun_class"]),
        "actions": (
            int(labelled_pairs[["verb_class", "noun_class"]].drop_duplicates().shape[0])
            if len(labelled_pairs)
            else None
        ),
        "classes": _distinct(table["class_id"]),
    }


def summarize(fmt: str, annotations: str | Path, root: str | Path | None = None) -> dict:
    """The summary of every split of ``fmt`` found in ``annotations`` (or ``root``)."""
    found = available_splits(fmt, annotations, root)
    return {
        "format": fmt,
        "annotations": str(annotations),
        "root": None if root is None else str(root),
        "splits": {s: split_summary(load_segments(fmt, annotations, s, root)) for s in found},
    }


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_summary(summary: dict) -> str:
    """The summary as a fixed-width table, one row per split."""
    headers = ["split", "segments", "participants", "videos", "frames", "labelled",
               "verbs", "nouns", "actions", "classes"]
    rows = []
    for split, s in summary["splits"].items():
        people = _cell(s["participants"])
        if s["participants"] <= LIST_PARTICIPANTS_UP_TO:
            people += f" ({' '.join(s['participant_ids'])})"
        rows.append([split, _cell(s["segments"]), people, _cell(s["videos"]), _cell(s["frames"]),
                     _cell(s["labelled"]), _cell(s["verb_classes"]), _cell(s["noun_classes"]),
                     _cell(s["actions"]), _cell(s["classes"])])
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))]).rstrip()

    source = summary["root"] or summary["annotations"]
    out = [f"{get_dataset(summary['format']).title} annotations in {source}", line(headers)]
    out += [line(r) for r in rows] if rows else ["(no split files found)"]
    return "\n".join(out)


def run_summary(args: argparse.Namespace) -> int:
    """Prints the summary; 1 with the reader's message on bad annotations."""
    try:
        summary = summarize(args.format, args.annotations, args.root)
    except AnnotationError as err:
        print(f"fpar data summary: {err}", file=sys.stderr)
        return 1
    if not summary["splits"]:
        print(
            f"fpar data summary: no {args.format} split files found in "
            f"{args.root or args.annotations}",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``fpar data summary``."""
    parser = data_group(subparsers).add_parser(
        "summary",
        help="per-split counts of an annotation folder",
        description="For every split whose file exists, print the number of segments, "
        "participants (listed for small sets), videos, frames and verb/noun/action/class "
        "labels used. Bad rows are reported with file and line.",
    )
    parser.add_argument("--format", required=True, choices=dataset_names(),
                        help="dataset format of the annotation folder")
    parser.add_argument("--annotations", required=True, type=Path,
                        help="folder of the dataset's annotation files (GTEA-61: its frame "
                        "folder root, unless --root is given)")
    parser.add_argument("--root", type=Path, default=None,
                        help="GTEA-61 only: folder holding <S1..S4>/<class>/<instance>/ frame "
                        "folders (or a folder with a frames/ subfolder holding them)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of the table")
    parser.set_defaults(func=run_summary)
