"""EGTEA Gaze+: the official split files ``train_split{k}.txt`` / ``test_split{k}.txt``.

Each line is ``<clip> <action 1-106> <verb 1-19> <noun 1-53>`` with
``clip = <session>-<start_ms>-<end_ms>-F<start_frame>-F<end_frame>``. Ids are 1-based in the
file and 0-based in the table; the video is the session (one video per session) and the
participant is the session's first part ("OP01" of "OP01-R01-PastaSalad").
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from shards.annotations.table import (
    AnnotationError,
    check_frames,
    check_range,
    check_times,
    check_unique_ids,
    finish_table,
    require_file,
)

log = logging.getLogger(__name__)

NUM_CLASSES = {"class": 106, "verb": 19, "noun": 53}
FPS = 24.0
SPLIT_NUMBERS = (1, 2, 3)
SPLITS = tuple(f"{kind}_split{k}" for k in SPLIT_NUMBERS for kind in ("train", "test"))
# Optional name tables as the dataset ships them: "<name> <1-based index>" per line.
NAME_FILES = {"class": "action_idx.txt", "verb": "verb_idx.txt", "noun": "noun_idx.txt"}

_CLIP = re.compile(
    r"^(?P<session>[^-\s]+(?:-[^-\s]+)*?)-(?P<start_ms>\d+)-(?P<stop_ms>\d+)"
    r"-F(?P<start>\d+)-F(?P<stop>\d+)$"
)
# (column in the line, table column, class count key)
_LABEL_FIELDS = ((1, "class_id", "class"), (2, "verb_class", "verb"), (3, "noun_class", "noun"))


def available_splits(annotations: str | Path) -> list[str]:
    """The splits whose files exist in ``annotations``."""
    annotations = Path(annotations)
    return [s for s in SPLITS if (annotations / f"{s}.txt").is_file()]


def _parse_lines(path: Path) -> tuple[dict[str, list], np.ndarray]:
    """Splits the file into fields per line, naming the line of any malformed one."""
    fields: dict[str, list] = {k: [] for k in ("clip", "session", "start_ms", "stop_ms")}
    fields.update({k: [] for k in ("start", "stop", "class_id", "verb_class", "noun_class")})
    lines = []
    with open(path, encoding="utf-8") as fh:
        for number, text in enumerate(fh, start=1):
            parts = text.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise AnnotationError(
                    path,
                    f"expected 4 fields '<clip> <action> <verb> <noun>', found {len(parts)}",
                    number,
                )
            match = _CLIP.match(parts[0])
            if not match:
                raise AnnotationError(
                    path,
                    f"clip name {parts[0]!r} is not <session>-<start_ms>-<end_ms>-F<start>-F<end>",
                    number,
                )
            for position, column, _ in _LABEL_FIELDS:
                if not re.fullmatch(r"[+-]?\d+", parts[position]):
                    raise AnnotationError(
                        path, f"{column}: {parts[position]!r} is not an integer", number
                    )
                fields[column].append(int(parts[position]))
            fields["clip"].append(parts[0])
            for key in ("session", "start_ms", "stop_ms", "start", "stop"):
                fields[key].append(match[key])
            lines.append(number)
    return fields, np.asarray(lines, dtype=np.int64)


def load(annotations: str | Path, split: str, require_labels: bool = False) -> pd.DataFrame:
    """Reads one EGTEA Gaze+ split file into the segment table (every clip is labelled).

    ``require_labels`` is accepted for a uniform API: split files always carry labels.
    """
    if split not in SPLITS:
        raise ValueError(f"EGTEA split {split!r} unknown; choose from {', '.join(SPLITS)}")
    path = require_file(annotations, f"{split}.txt", f"EGTEA Gaze+ {split}")
    fields, lines = _parse_lines(path)
    start = np.asarray(fields["start"], dtype=np.int64)
    stop = np.asarray(fields["stop"], dtype=np.int64)
    check_frames(path, start, stop, lines)
    check_unique_ids(path, fields["clip"], lines)
    # The clip name's milliseconds are its time in the session video; the F numbers count
    # that video's own (24 fps) frames and are kept as written.
    start_time = np.asarray(fields["start_ms"], dtype=np.float64) / 1000.0
    stop_time = np.asarray(fields["stop_ms"], dtype=np.float64) / 1000.0
    check_times(path, start_time, stop_time, lines)
    labels = {}
    for _, column, key in _LABEL_FIELDS:
        one_based = np.asarray(fields[column], dtype=np.int64)
        check_range(path, one_based, column, NUM_CLASSES[key], lines, base=1)
        labels[column] = one_based - 1
    sessions = pd.Series(fields["session"], dtype=object)
    columns = {
        "segment_id": fields["clip"],
        "video_id": sessions.to_numpy(),
        "participant": sessions.str.split("-").str[0].to_numpy(),
        "start_frame": start,
        "stop_frame": stop,
        "start_time": start_time,
        "stop_time": stop_time,
        "fps": FPS,
        **labels,
        "split": split,
    }
    extras = pd.DataFrame(
        {
            "start_ms": np.asarray(fields["start_ms"], dtype=np.int64),
            "stop_ms": np.asarray(fields["stop_ms"], dtype=np.int64),
        }
    )
    return finish_table(columns, extras)


def _read_name_table(path: Path, count: int) -> list[str]:
    names: dict[int, str] = {}
    with open(path, encoding="utf-8") as fh:
        for number, text in enumerate(fh, start=1):
            text = text.strip()
            if not text:
                continue
            name, _, index = text.rpartition(" ")
            if not name or not index.isdigit():
                raise AnnotationError(path, f"expected '<name> <index>', found {text!r}", number)
            if not 1 <= int(index) <= count:
                raise AnnotationError(path, f"index {index} outside 1..{count}", number)
            names[int(index) - 1] = name
    missing = [i + 1 for i in range(count) if i not in names]
    if missing:
        raise AnnotationError(path, f"no name for index(es) {missing[:10]}")
    return [names[i] for i in range(count)]


def class_names(annotations: str | Path) -> dict[str, list[str]]:
    """Action ("class"), verb and noun names by 0-based id.

    Read from ``action_idx.txt``, ``verb_idx.txt``, ``noun_idx.txt`` when present; the
    public split files carry no names, so absent tables give "action_0"-style names.
    """
    annotations = Path(annotations)
    result = {}
    for key, file_name in NAME_FILES.items():
        path = annotations / file_name
        if path.is_file():
            result[key] = _read_name_table(path, NUM_CLASSES[key])
        else:
            prefix = "action" if key == "class" else key
            log.warning("%s not in %s: %s names are numbered", file_name, annotations, prefix)
            result[key] = [f"{prefix}_{i}" for i in range(NUM_CLASSES[key])]
    return result
