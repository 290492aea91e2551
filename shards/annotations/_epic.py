"""What EPIC-KITCHENS-55 and -100 share: CSV segment files, class tables, the fps table.

The two releases differ only in file names and a few column names, captured by
``EpicLayout``; the reading and checking is the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shards.annotations.table import (
    LABEL_MISSING,
    AnnotationError,
    check_frames,
    check_range,
    check_text,
    check_times,
    check_unique_ids,
    csv_lines,
    finish_table,
    keep_extras,
    parse_int_column,
    parse_time_column,
    read_csv_strings,
    require_file,
)

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("verb_class", "noun_class")


@dataclass(frozen=True)
class EpicLayout:
    """File and column names of one EPIC-KITCHENS release."""

    name: str
    id_column: str
    video_info: str
    video_info_column: str
    verb_classes: str
    noun_classes: str
    verb_id_column: str
    noun_id_column: str
    class_key_column: str
    num_classes: dict
    # Used, with a warning, only when the whole video-info file is absent.
    fallback_fps: float = 60.0


def read_class_table(path: Path, id_column: str, key_column: str) -> list[str]:
    """Reads a class table into a list of names indexed by class id (ids must be 0..n-1)."""
    df = read_csv_strings(path, [id_column, key_column])
    lines = csv_lines(len(df))
    ids = parse_int_column(path, df[id_column], id_column, lines)
    order = np.argsort(ids, kind="stable")
    expected = np.arange(len(ids))
    if not np.array_equal(ids[order], expected):
        wrong = int(np.flatnonzero(ids[order] != expected)[0])
        raise AnnotationError(
            path,
            f"class ids must run 0..{len(ids) - 1} without gaps or repeats; "
            f"id {wrong} is missing or repeated",
            line=int(lines[order[wrong]]),
        )
    return [str(df[key_column].iloc[i]) for i in order]


def _class_tables(layout: EpicLayout) -> tuple[tuple[str, str, str], ...]:
    """(key, file name, id column) of the verb and noun tables."""
    return (
        ("verb", layout.verb_classes, layout.verb_id_column),
        ("noun", layout.noun_classes, layout.noun_id_column),
    )


def class_names(layout: EpicLayout, annotations: str | Path) -> dict[str, list[str]]:
    """Verb and noun names by class id, from the release's class tables."""
    annotations = Path(annotations)
    return {
        key: read_class_table(
            require_file(annotations, name, f"{key} class table"),
            id_column,
            layout.class_key_column,
        )
        for key, name, id_column in _class_tables(layout)
    }


def class_counts(layout: EpicLayout, annotations: Path) -> dict[str, int]:
    """How many verb/noun classes the labels may use: the class tables when present."""
    counts = dict(layout.num_classes)
    for key, name, id_column in _class_tables(layout):
        if (annotations / name).is_file():
            counts[key] = len(
                read_class_table(annotations / name, id_column, layout.class_key_column)
            )
    return counts


def video_fps(
    layout: EpicLayout, annotations: Path, videos: pd.Series, segments_path: Path
) -> np.ndarray:
    """The fps of each row's video, from the release's video-info table.

    A video absent from a present table is an error naming it; an absent table gives
    ``layout.fallback_fps`` with a warning.
    """
    info_path = annotations / layout.video_info
    if not info_path.is_file():
        log.warning(
            "%s not found in %s: assuming %.2f fps for every video",
            layout.video_info,
            annotations,
            layout.fallback_fps,
        )
        return np.full(len(videos), layout.fallback_fps, dtype=np.float64)
    info = read_csv_strings(info_path, [layout.video_info_column, "fps"])
    info_lines = csv_lines(len(info))
    fps_values = pd.to_numeric(info["fps"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(fps_values) | (fps_values <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AnnotationError(
            info_path, f"column fps: {info['fps'].iloc[i]!r} is not a positive number",
            line=int(info_lines[i]),
        )
    table = dict(zip(info[layout.video_info_column].astype(str), fps_values))
    fps = videos.map(table)
    unknown = fps.isna().to_numpy()
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise AnnotationError(
            info_path,
            f"video {videos.iloc[i]!r} (line {i + 2} of {segments_path.name}) is not in this "
            "table, so its fps is unknown",
        )
    return fps.to_numpy(dtype=np.float64)


def read_segments(
    layout: EpicLayout,
    annotations: Path,
    path: Path,
    split: str,
    *,
    labelled_format: bool,
    labels_required: bool,
) -> pd.DataFrame:
    """Reads one EPIC segment file (labels or timestamps) into the segment table.

    Args:
        layout: the release's names.
        annotations: the folder holding the class and video-info tables.
        path: the segment file.
        split: the split name written into the table.
        labelled_format: the file's format has label columns (train, validation, test
            labels): their absence is a missing-column error.
        labels_required: the caller needs labels: a timestamps file is an error.
    """
    id_col = layout.id_column
    required = [id_col, "participant_id", "video_id", "start_timestamp", "stop_timestamp",
                "start_frame", "stop_frame"]
    df = read_csv_strings(path, [*required, *(LABEL_COLUMNS if labelled_format else ())])
    has_labels = all(c in df.columns for c in LABEL_COLUMNS)
    if labels_required and not has_labels:
        absent = ", ".join(c for c in LABEL_COLUMNS if c not in df.columns)
        raise AnnotationError(
            path,
            f"labels were asked for but this file has no label column(s) {absent} "
            "(a timestamps file: test labels are not public)",
            line=1,
        )
    lines = csv_lines(len(df))
    for column in (id_col, "participant_id", "video_id"):
        check_text(path, df[column], column, lines)
    start = parse_int_column(path, df["start_frame"], "start_frame", lines)
    stop = parse_int_column(path, df["stop_frame"], "stop_frame", lines)
    check_frames(path, start, stop, lines)
    start_time = parse_time_column(path, df["start_timestamp"], "start_timestamp", lines)
    stop_time = parse_time_column(path, df["stop_timestamp"], "stop_timestamp", lines)
    check_times(path, start_time, stop_time, lines)
    segment_ids = df[id_col].str.strip()
    check_unique_ids(path, segment_ids.tolist(), lines)
    if has_labels:
        counts = class_counts(layout, annotations)
        verb = parse_int_column(path, df["verb_class"], "verb_class", lines)
        noun = parse_int_column(path, df["noun_class"], "noun_class", lines)
        check_range(path, verb, "verb_class", counts["verb"], lines)
        check_range(path, noun, "noun_class", counts["noun"], lines)
    else:
        verb = noun = np.full(len(df), LABEL_MISSING, dtype=np.int64)
    videos = df["video_id"].str.strip()
    columns = {
        "segment_id": segment_ids.to_numpy(),
        "video_id": videos.to_numpy(),
        "participant": df["participant_id"].str.strip().to_numpy(),
        "start_frame": start,
        "stop_frame": stop,
        # The segment's time: start_frame/stop_frame count the frame release's frames
        # (60 or 50 fps), not the raw file's, and are kept only as the file wrote them.
        "start_time": start_time,
        "stop_time": stop_time,
        "fps": video_fps(layout, annotations, videos, path),
        "verb_class": verb,
        "noun_class": noun,
        "class_id": np.full(len(df), LABEL_MISSING, dtype=np.int64),
        "split": split,
    }
    # The timestamps stay as written too, next to their parsed start_time/stop_time.
    extras = keep_extras(df, [c for c in (*required, *LABEL_COLUMNS) if not c.endswith("_timestamp")])
    return finish_table(columns, extras)


def read_id_list(path: Path, column: str) -> list[str]:
    """Reads a one-column list file (participant ids, tail classes...) as strings."""
    df = read_csv_strings(path, [column])
    lines = csv_lines(len(df))
    check_text(path, df[column], column, lines)
    return [str(v).strip() for v in df[column]]
