"""The segment table every reader returns, its error type and the row checks they share.

Line numbers in errors are 1-based as an editor shows them: in a CSV file with a header
the first data row is line 2; in a header-less text file it is line 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

SEGMENT_COLUMNS: list[str] = [
    "segment_id",
    "video_id",
    "participant",
    "start_frame",
    "stop_frame",
    "start_time",
    "stop_time",
    "fps",
    "verb_class",
    "noun_class",
    "class_id",
    "split",
]
LABEL_MISSING = -1

_INT_COLUMNS = ("start_frame", "stop_frame", "verb_class", "noun_class", "class_id")
_STR_COLUMNS = ("segment_id", "video_id", "participant", "split")
# How many further offending lines an error lists after the first one.
_MORE_LINES_SHOWN = 4


class AnnotationError(ValueError):
    """An annotation file (or frame folder) that cannot be read into the segment table.

    Attributes:
        path: the file or folder at fault.
        line: the 1-based line number of the first offending row, or None.
    """

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = Path(path)
        self.line = line
        where = f"{self.path}, line {line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {message}")


def require_file(folder: str | Path, name: str, what: str = "") -> Path:
    """Returns ``folder/name``, or raises naming the file and the folder searched."""
    folder = Path(folder)
    path = folder / name
    if not folder.is_dir():
        raise AnnotationError(folder, f"annotation folder does not exist (looking for {name})")
    if not path.is_file():
        purpose = f" ({what})" if what else ""
        raise AnnotationError(folder, f"{name}{purpose} not found in this folder")
    return path


def read_csv_strings(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """Reads a CSV with a header, every cell as a string, and checks the required columns.

    Args:
        path: the CSV file.
        required: column names that must be in the header.

    Returns:
        The table with string cells (empty cells are empty strings, never NaN).

    Raises:
        AnnotationError: unreadable file, or a required column missing (line 1).
    """
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise AnnotationError(path, "file is empty (a header line is expected)", line=1) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise AnnotationError(path, f"not a readable CSV file ({err})") from err
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise AnnotationError(
            path,
            f"missing column(s) {', '.join(missing)} in the header "
            f"(found: {', '.join(map(str, df.columns))})",
            line=1,
        )
    return df


def _offenders(path: Path, lines: np.ndarray, bad: np.ndarray, describe) -> None:
    """Raises naming the first offending line (and a few more) if ``bad`` has any True."""
    idx = np.flatnonzero(bad)
    if idx.size == 0:
        return
    first = int(idx[0])
    message = describe(first)
    if idx.size > 1:
        more = ", ".join(str(int(lines[i])) for i in idx[1 : 1 + _MORE_LINES_SHOWN])
        ellipsis = ", ..." if idx.size > 1 + _MORE_LINES_SHOWN else ""
        message += f" (also on {idx.size - 1} more line(s): {more}{ellipsis})"
    raise AnnotationError(path, message, line=int(lines[first]))


def parse_int_column(
    path: Path, values: Sequence[str] | pd.Series, column: str, lines: np.ndarray
) -> np.ndarray:
    """Turns a column of strings into int64, naming the line of the first non-integer.

    Args:
        path: the file, for the error message.
        values: the cells, one per row.
        column: the column name, for the error message.
        lines: the 1-based line number of each row.
    """
    raw = pd.Series(values, dtype=object).astype(str).str.strip()
    numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
    cells = raw.to_numpy()
    _offenders(
        path, lines, bad, lambda i: f"column {column}: {cells[i]!r} is not an integer"
    )
    return numbers.astype(np.int64)


def parse_time_column(
    path: Path, values: Sequence[str] | pd.Series, column: str, lines: np.ndarray
) -> np.ndarray:
    """Turns ``HH:MM:SS.ff`` cells into seconds (float64), naming the line of a bad one."""
    from shards.timing import parse_timestamp

    cells = pd.Series(values, dtype=object).astype(str).to_numpy()
    seconds = np.empty(len(cells), np.float64)
    bad = np.zeros(len(cells), bool)
    for i, cell in enumerate(cells):
        try:
            seconds[i] = parse_timestamp(cell)
        except ValueError:
            bad[i] = True
    _offenders(path, lines, bad, lambda i: f"column {column}: {cells[i]!r} is not a timestamp HH:MM:SS.ff")
    return seconds


def check_times(path: Path, start: np.ndarray, stop: np.ndarray, lines: np.ndarray) -> None:
    """Checks every segment's stop time is at or after its start time."""
    _offenders(
        path, lines, stop < start,
        lambda i: f"stop time {stop[i]:.3f} s is before start time {start[i]:.3f} s",
    )


def check_range(
    path: Path, values: np.ndarray, column: str, count: int, lines: np.ndarray, base: int = 0
) -> None:
    """Checks class ids lie in ``[base, base + count)``, the rows of the class table."""
    bad = (values < base) | (values >= base + count)
    _offenders(
        path,
        lines,
        bad,
        lambda i: f"column {column}: class id {int(values[i])} is outside the class table "
        f"({base}..{base + count - 1})",
    )


def check_frames(path: Path, start: np.ndarray, stop: np.ndarray, lines: np.ndarray) -> None:
    """Checks frames are 1-based and every segment ends at or after its start."""
    _offenders(
        path, lines, start < 1, lambda i: f"start_frame {int(start[i])} is below 1 (frames are 1-based)"
    )
    _offenders(
        path,
        lines,
        stop < start,
        lambda i: f"stop_frame {int(stop[i])} is before start_frame {int(start[i])}",
    )


def check_text(path: Path, values: Sequence[str], column: str, lines: np.ndarray) -> None:
    """Checks a text column has no empty cell."""
    cells = np.asarray(values, dtype=object)
    bad = np.array([not str(v).strip() for v in cells], dtype=bool)
    _offenders(path, lines, bad, lambda i: f"column {column} is empty")


def check_unique_ids(path: Path, ids: Sequence[str], lines: np.ndarray) -> None:
    """Checks segment ids are unique: one prediction per segment depends on it."""
    if not pd.Series(list(ids), dtype=object).duplicated().any():
        return
    first_line: dict[str, int] = {}
    for value, line in zip(ids, lines):
        if value in first_line:
            raise AnnotationError(
                path, f"segment id {value!r} repeats the one on line {first_line[value]}", int(line)
            )
        first_line[value] = int(line)


def csv_lines(n_rows: int) -> np.ndarray:
    """The editor line number of each data row of a CSV file with a one-line header."""
    return np.arange(2, n_rows + 2)


def finish_table(columns: dict, extras: pd.DataFrame | None = None) -> pd.DataFrame:
    """Builds the segment table: SEGMENT_COLUMNS in order with their types, then extras.

    Args:
        columns: one array or scalar per name of SEGMENT_COLUMNS.
        extras: further columns (narration, verb, noun, timestamps...) kept after them.
    """
    missing = [c for c in SEGMENT_COLUMNS if c not in columns]
    if missing:
        raise KeyError(f"segment table built without column(s) {missing}")
    table = pd.DataFrame({c: columns[c] for c in SEGMENT_COLUMNS})
    for c in _INT_COLUMNS:
        table[c] = table[c].astype(np.int64)
    for c in _STR_COLUMNS:
        table[c] = table[c].astype(str)
    for c in ("start_time", "stop_time", "fps"):
        table[c] = table[c].astype(np.float64)
    if extras is not None and len(extras.columns):
        extras = extras.drop(columns=[c for c in extras.columns if c in SEGMENT_COLUMNS])
        table = pd.concat([table, extras.reset_index(drop=True)], axis=1)
    return table.reset_index(drop=True)


def keep_extras(df: pd.DataFrame, used: Iterable[str]) -> pd.DataFrame:
    """The columns of a raw file not already mapped onto the segment table."""
    used = set(used)
    return df[[c for c in df.columns if c not in used]]
