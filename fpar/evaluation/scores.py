"""Scores files: the official EPIC-KITCHENS-100 C1 results format, used for every dataset.

A scores file is a ``torch.save`` of a dict holding ``narration_id`` (list of segment ids as
strings) and one ``<task>_output`` array of shape (N, classes) per task: ``verb_output`` and
``noun_output`` for EPIC-KITCHENS, ``class_output`` for single-label datasets (GTEA-61,
EGTEA Gaze+). Row i of every array scores segment ``narration_id[i]``. Files written by
fpar also hold ``views``: how many test-time views each row averages
(:func:`fpar.evaluation.views.views_record`); readers of the format ignore it.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from shards.files import atomic_write_bytes

ID_KEY = "narration_id"
VIEWS_KEY = "views"
OUTPUT_SUFFIX = "_output"
TASKS = ("verb", "noun", "class")

# numpy objects a pickled array refers to; allowing only these keeps ``torch.load`` in its
# weights-only mode, so a scores file cannot run code when it is read. Files written under
# numpy 1.x (the official example results) name the same functions ``numpy.core...``.
_multiarray = np._core.multiarray
_NUMPY_GLOBALS = [
    np.ndarray,
    np.dtype,
    _multiarray._reconstruct,
    _multiarray.scalar,
    (_multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
    (_multiarray.scalar, "numpy.core.multiarray.scalar"),
    *(type(np.dtype(t)) for t in ("float16", "float32", "float64", "int64", "int32", "U1", "O")),
]


class ScoresError(ValueError):
    """A scores file (or the data meant for one) that breaks the format."""


def _task_name(key: str) -> str:
    return key[: -len(OUTPUT_SUFFIX)] if key.endswith(OUTPUT_SUFFIX) else key


def _validate(
    ids: Sequence, outputs: Mapping[str, object], where: str
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Checks ids and arrays, returning them as a list of str and float arrays by task."""
    if not isinstance(ids, (str, bytes)) and hasattr(ids, "__array__"):
        ids = np.asarray(ids)  # a pandas array (what ``df.narration_id.values`` gives)
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (list, tuple, np.ndarray)):
        raise ScoresError(f"{where}: {ID_KEY} must be a list of strings, got {type(ids).__name__}")
    ids = list(ids)
    not_str = [i for i, v in enumerate(ids) if not isinstance(v, (str, np.str_))]
    if not_str:
        i = not_str[0]
        raise ScoresError(
            f"{where}: {ID_KEY}[{i}] is {ids[i]!r} ({type(ids[i]).__name__}), not a string"
        )
    ids = [str(v) for v in ids]
    seen: dict[str, int] = {}
    for i, value in enumerate(ids):
        if value in seen:
            raise ScoresError(
                f"{where}: segment id {value!r} appears twice (rows {seen[value]} and {i})"
            )
        seen[value] = i
    if not outputs:
        raise ScoresError(f"{where}: no score arrays (expected verb_output/noun_output or class_output)")
    arrays: dict[str, np.ndarray] = {}
    for key, value in outputs.items():
        task = _task_name(str(key))
        if task not in TASKS:
            raise ScoresError(f"{where}: unknown score array {key!r} (tasks: {', '.join(TASKS)})")
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        array = np.asarray(value)
        if array.ndim != 2:
            raise ScoresError(
                f"{where}: {task}{OUTPUT_SUFFIX} must be 2-D (N, classes), got shape {array.shape}"
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise ScoresError(f"{where}: {task}{OUTPUT_SUFFIX} must hold floats, got {array.dtype}")
        if array.shape[0] != len(ids):
            raise ScoresError(
                f"{where}: {task}{OUTPUT_SUFFIX} has {array.shape[0]} rows but there are {len(ids)} ids"
            )
        arrays[task] = array
    if "class" in arrays and len(arrays) > 1:
        raise ScoresError(f"{where}: class_output cannot be mixed with verb/noun outputs")
    return ids, arrays


def save_scores(path: str | Path, ids: Sequence[str], outputs: Mapping[str, np.ndarray],
                views: Mapping[str, int | str] | None = None) -> Path:
    """Writes a scores file atomically.

    Args:
        path: Destination file (conventionally ``*.pt`` or ``*.pkl``).
        ids: Segment ids, unique strings, one per row.
        outputs: Arrays (N, classes) by task, keyed ``verb``/``noun`` or ``class`` (the
            ``*_output`` spelling is accepted too). Tensors are converted to numpy.
        views: The test-time views behind the rows, stored under ``views``.

    Returns:
        The path written.

    Raises:
        ScoresError: If the ids or arrays break the format.
    """
    path = Path(path)
    ids, arrays = _validate(ids, outputs, str(path))
    payload: dict[str, object] = {ID_KEY: ids}
    payload.update({f"{task}{OUTPUT_SUFFIX}": array for task, array in arrays.items()})
    if views is not None:
        payload[VIEWS_KEY] = dict(views)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _from_list_format(entries: list[dict], path: Path) -> dict:
    """The official list layout (one dict per segment) turned into the dict layout."""
    keys = set(entries[0])
    for i, entry in enumerate(entries):
        if set(entry) != keys:
            raise ScoresError(f"{path}: entry {i} has keys {sorted(entry)}, entry 0 has {sorted(keys)}")
    data: dict = {ID_KEY: [e.get(ID_KEY) for e in entries]}
    for key in keys - {ID_KEY}:
        data[key] = np.stack([np.asarray(e[key]) for e in entries])
    return data


def load_scores(path: str | Path,
                trust_pickle: bool = False) -> tuple[list[str], dict[str, np.ndarray]]:
    """Reads and validates a scores file.

    Args:
        path: A file written by ``save_scores`` or the official EPIC-100 tools (the
            dict layout, or the list layout with one dict per segment).
        trust_pickle: Read the file with full unpickling, so that ids stored as other
            Python objects (a pandas array) load. Unpickling runs whatever code the file
            names: only for files you made or trust.

    Returns:
        ``(ids, outputs)``: the segment ids as strings and the score arrays by task
        (``verb``/``noun`` or ``class``), in file order.

    Raises:
        ScoresError: If the file is missing, unreadable or breaks the format; the message
            names the file.
    """
    path = Path(path)
    data = _read(path, trust_pickle)
    if ID_KEY not in data:
        raise ScoresError(f"{path}: no '{ID_KEY}' entry (keys: {', '.join(map(str, data))})")
    outputs = {k: v for k, v in data.items() if k != ID_KEY and str(k).endswith(OUTPUT_SUFFIX)}
    return _validate(data[ID_KEY], outputs, str(path))


def read_views(path: str | Path, trust_pickle: bool = False) -> dict | None:
    """The ``views`` record of a scores file (None when it has none, e.g. one written by
    other tools).

    Raises:
        ScoresError: If the file is missing or unreadable.
    """
    views = _read(Path(path), trust_pickle).get(VIEWS_KEY)
    return dict(views) if isinstance(views, dict) else None


def _read(path: Path, trust_pickle: bool) -> dict:
    """The file's dict (the official list layout turned into it)."""
    if not path.is_file():
        raise ScoresError(f"{path}: scores file not found")
    try:
        if trust_pickle:
            data = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(_NUMPY_GLOBALS):
                data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a bad pickle
        if "Weights only load failed" in str(err):
            raise ScoresError(f"{path}: not a readable scores file ({_refusal(err)})") from err
        raise ScoresError(f"{path}: not a readable scores file "
                          f"({str(err).splitlines()[0]})") from err
    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        data = _from_list_format(data, path)
    if not isinstance(data, dict):
        raise ScoresError(f"{path}: expected a dict, found {type(data).__name__}")
    return data


def _refusal(err: Exception) -> str:
    """Why a weights-only load refused a file, and the two ways forward."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    what = f" ({found.group(1)})" if found else ""
    return (f"it holds Python objects other than ids and numeric arrays{what}, not loaded "
            "because unpickling them could run any code. Save the ids as strings: "
            f"{{'{ID_KEY}': np.asarray(ids, dtype=str), ...}} (a pandas column's .values is "
            "a pandas array); or, for a file you made or trust, load it with "
            "trust_pickle=True (--trust-pickle on the command line)")


def merge_scores(
    parts: Sequence[tuple[list[str], dict[str, np.ndarray]]], names: Sequence[str]
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Concatenates several loaded scores files (e.g. S1 and S2) into one.

    Args:
        parts: ``(ids, outputs)`` pairs as ``load_scores`` returns them.
        names: A name per part (its file), for messages.

    Raises:
        ScoresError: If the parts hold different tasks or class counts, or share an id.
    """
    if len(parts) == 1:
        return parts[0]
    tasks = set(parts[0][1])
    owner: dict[str, str] = {}
    for (ids, outputs), name in zip(parts, names):
        shapes = {t: a.shape[1] for t, a in outputs.items()}
        first = {t: a.shape[1] for t, a in parts[0][1].items()}
        if set(outputs) != tasks or shapes != first:
            raise ScoresError(f"{name}: tasks/classes {shapes} differ from {names[0]}'s {first}")
        for value in ids:
            if value in owner:
                raise ScoresError(f"segment id {value!r} is in both {owner[value]} and {name}")
            owner[value] = name
    ids = [v for part, _ in parts for v in part]
    outputs = {t: np.concatenate([o[t] for _, o in parts]) for t in tasks}
    return ids, outputs
