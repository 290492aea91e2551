"""Challenge submission archives for EPIC-KITCHENS-55 and EPIC-KITCHENS-100.

EPIC-55: ``seen.json`` (S1) and ``unseen.json`` (S2), version "0.1", each segment with all
verb and noun scores and its 100 best actions ``"v,n": p(v) p(n)``. EPIC-100: ``test.json``,
version "0.2", with the supervision levels and all verb and noun scores. Verb and noun
scores are written as given (the servers apply their own softmax); archives are flat zips.

Everything is checked before anything is written: each test segment scored exactly once and
no other, the dataset's class counts, finite scores.

The JSON text is assembled with one printf-style template per task and row, rather than
by ``json.dumps`` on millions of small dicts: the same valid JSON, several times faster.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from fpar.evaluation.epic_metrics import rank_actions
from fpar.evaluation.groundtruth import EvaluationError, show_ids, split_of_file
from fpar.evaluation.metrics import check_outputs
from shards.annotations import load_segments
from shards.datasets import UnknownDataset, dataset_names, get_dataset
from shards.files import atomic_write_bytes

EPIC55_VERSION = "0.1"
EPIC100_VERSION = "0.2"
CHALLENGE = "action_recognition"
SUPERVISION_LEVELS = range(0, 6)
# Fast deflate: the JSON is ~100 MB of digits and level 1 compresses it nearly as well.
_ZIP_LEVEL = 1


def _number_format(array: np.ndarray) -> str:
    """A printf format that round-trips the array's floats exactly."""
    return "%.9g" if array.dtype.itemsize <= 4 else "%r"


def _scores_template(count: int, number: str) -> str:
    return "{" + ", ".join(f'"{i}": {number}' for i in range(count)) + "}"


def _rows_json(array: np.ndarray) -> list[str]:
    """Each row as a JSON object ``{"0": s0, "1": s1, ...}``."""
    template = _scores_template(array.shape[1], _number_format(array))
    if array.dtype.itemsize <= 4:
        rows = array.astype(np.float64).tolist()
    else:
        rows = array.tolist()
    return [template % tuple(row) for row in rows]


def _actions_json(verb_scores: np.ndarray, noun_scores: np.ndarray) -> list[str]:
    """Each row's top-100 actions as ``{"v,n": p, ...}``, best first."""
    ranking = rank_actions(verb_scores, noun_scores)
    k = ranking.verbs.shape[1]
    template = "{" + ", ".join(['"%d,%d": %r'] * k) + "}"
    # Interleave (verb, noun, prob) so one template fills a whole row in C.
    triples = np.empty((len(ranking.verbs), k * 3), dtype=object)
    triples[:, 0::3] = ranking.verbs
    triples[:, 1::3] = ranking.nouns
    triples[:, 2::3] = ranking.probs
    return [template % tuple(row) for row in triples.tolist()]


def _results_json(ids: Sequence[str], tasks: Mapping[str, list[str]]) -> str:
    """The ``"results"`` object: ``{"<id>": {"verb": {...}, ...}, ...}``."""
    parts = []
    for i, segment_id in enumerate(ids):
        body = ", ".join(f'"{task}": {rows[i]}' for task, rows in tasks.items())
        parts.append(f"{json.dumps(str(segment_id))}: {{{body}}}")
    return "{" + ", ".join(parts) + "}"


def _document(header: dict, results: str) -> str:
    head = json.dumps(header)
    return head[:-1] + ', "results": ' + results + "}"


def epic55_json(ids: Sequence[str], verb_scores: np.ndarray, noun_scores: np.ndarray) -> str:
    """One EPIC-55 results file (``seen.json`` or ``unseen.json``) as text."""
    tasks = {
        "verb": _rows_json(verb_scores),
        "noun": _rows_json(noun_scores),
        "action": _actions_json(verb_scores, noun_scores),
    }
    return _document({"version": EPIC55_VERSION, "challenge": CHALLENGE}, _results_json(ids, tasks))


def epic100_json(
    ids: Sequence[str], verb_scores: np.ndarray, noun_scores: np.ndarray, sls: Mapping[str, int]
) -> str:
    """The EPIC-100 ``test.json`` as text; ``sls`` holds sls_pt, sls_tl and sls_td."""
    header = {"version": EPIC100_VERSION, "challenge": CHALLENGE}
    header.update({key: int(sls[key]) for key in ("sls_pt", "sls_tl", "sls_td")})
    tasks = {"verb": _rows_json(verb_scores), "noun": _rows_json(noun_scores)}
    return _document(header, _results_json(ids, tasks))


def check_supervision_levels(sls: Mapping[str, int | None]) -> dict[str, int]:
    """Checks sls_pt, sls_tl and sls_td are each given and an integer 0-5."""
    checked = {}
    for key in ("sls_pt", "sls_tl", "sls_td"):
        value = sls.get(key)
        if value is None:
            raise EvaluationError(f"EPIC-100 submissions need {key} (supervision level 0-5)")
        is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if not is_int or value not in SUPERVISION_LEVELS:
            raise EvaluationError(f"{key} must be an integer from 0 to 5, got {value!r}")
        checked[key] = int(value)
    return checked


@dataclass(frozen=True)
class SubmissionFormat:
    """A challenge's archive: one JSON file per test split.

    Attributes:
        files: Test split -> file name inside the archive.
        write: ``(ids, verb_scores, noun_scores, supervision_levels) -> JSON text``.
        supervision_levels: Whether the challenge asks for sls_pt, sls_tl and sls_td.
    """

    files: Mapping[str, str]
    write: Callable[[Sequence[str], np.ndarray, np.ndarray, Mapping[str, int] | None], str]
    supervision_levels: bool = False


# By the name a dataset's registration gives (``submission``).
SUBMISSION_FORMATS = {
    "epic_kitchens_55": SubmissionFormat({"s1": "seen.json", "s2": "unseen.json"},
                                         lambda ids, verb, noun, sls: epic55_json(ids, verb, noun)),
    "epic_kitchens_100": SubmissionFormat({"test": "test.json"}, epic100_json, supervision_levels=True),
}


def submission_format(fmt: str) -> SubmissionFormat:
    """The challenge archive of dataset ``fmt``.

    Raises:
        EvaluationError: The dataset is unknown or has no challenge submission.
    """
    try:
        name = get_dataset(fmt).submission
    except UnknownDataset as err:
        raise EvaluationError(str(err)) from None
    if name is None:
        having = [n for n in dataset_names() if get_dataset(n).submission is not None]
        raise EvaluationError(f"submissions exist for {' and '.join(having)}, not {fmt!r}")
    return SUBMISSION_FORMATS[name]


def _test_ids(fmt: str, timestamps: Sequence[str | Path]) -> dict[str, list[str]]:
    """Segment ids per test split, read through the annotation readers."""
    by_split: dict[str, list[str]] = {}
    for path in timestamps:
        folder, split = split_of_file(fmt, path)
        if split in by_split:
            raise EvaluationError(f"{path}: split {split!r} given twice")
        by_split[split] = load_segments(fmt, folder, split)["segment_id"].astype(str).tolist()
    wanted = tuple(submission_format(fmt).files)
    if tuple(sorted(by_split)) != tuple(sorted(wanted)):
        raise EvaluationError(
            f"{fmt} submissions need the test segment file(s) of {', '.join(wanted)}, "
            f"got {', '.join(sorted(by_split)) or 'none'} ({', '.join(map(str, timestamps))})"
        )
    return by_split


def check_coverage(ids: Sequence[str], by_split: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """Score row of every test segment, per split; each scored exactly once and no other.

    Raises:
        EvaluationError: Naming the first test ids without a score, or scored ids that
            are not test segments.
    """
    row_of = {segment_id: i for i, segment_id in enumerate(ids)}
    rows: dict[str, np.ndarray] = {}
    every: set[str] = set()
    for split, test_ids in by_split.items():
        missing = [t for t in test_ids if t not in row_of]
        if missing:
            raise EvaluationError(
                f"{split}: {len(missing)} test segment(s) have no score: {show_ids(missing)}"
            )
        clash = every.intersection(test_ids)
        if clash:
            raise EvaluationError(
                f"{split}: segment(s) also in another test split: {show_ids(sorted(clash))}"
            )
        every.update(test_ids)
        rows[split] = np.fromiter((row_of[t] for t in test_ids), dtype=np.int64, count=len(test_ids))
    extra = [i for i in ids if i not in every]
    if extra:
        raise EvaluationError(f"{len(extra)} scored segment(s) are not test segments: {show_ids(extra)}")
    return rows


def build_submission(
    fmt: str,
    ids: Sequence[str],
    outputs: Mapping[str, np.ndarray],
    timestamps: Sequence[str | Path],
    sls: Mapping[str, int | None] | None = None,
) -> dict[str, str]:
    """Checks scores against the test segments and returns the archive's files as text.

    Args:
        fmt: A dataset with a challenge submission ("epic55", "epic100").
        ids: Segment ids of the score rows (for EPIC-55, S1 and S2 together).
        outputs: "verb" and "noun" score arrays.
        timestamps: EPIC-55: the S1 and S2 test files; EPIC-100: the test file.
        sls: EPIC-100 supervision levels (sls_pt, sls_tl, sls_td), each 0-5.

    Returns:
        {file name inside the archive: JSON text}.

    Raises:
        EvaluationError: On any check failing; nothing is written.
    """
    challenge = submission_format(fmt)
    levels = check_supervision_levels(sls or {}) if challenge.supervision_levels else None
    check_outputs(fmt, ids, outputs, "scores")
    rows = check_coverage(ids, _test_ids(fmt, timestamps))
    verb, noun = np.asarray(outputs["verb"]), np.asarray(outputs["noun"])
    ids = np.asarray(list(ids), dtype=object)
    return {name: challenge.write(ids[rows[s]], verb[rows[s]], noun[rows[s]], levels)
            for s, name in challenge.files.items()}


def write_archive(files: Mapping[str, str], out: str | Path) -> Path:
    """Zips ``files`` flat (no folders inside) and writes the archive atomically."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=_ZIP_LEVEL) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    atomic_write_bytes(out, buffer.getvalue())
    return Path(out)
