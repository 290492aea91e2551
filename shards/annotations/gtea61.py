"""GTEA-61: no annotation file; frame folders ``<root>/<S1..S4>/<class>/<instance>/``.

The label is the class folder (class ids = the sorted class folder names found under the
root, 61 in the real set), the subject folder gives the splits: the fixed split tests on S2,
leave-one-subject-out fold k tests on S{k}. A segment is a whole instance: frames 1..N where
N is the number of image files (a ``rgb/`` subfolder, as some frame releases use, is read
when the instance folder holds no images itself).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from shards.annotations.table import LABEL_MISSING, AnnotationError, finish_table

NUM_CLASSES = {"class": 61}
FPS = 24.0
SUBJECTS = ("S1", "S2", "S3", "S4")
FIXED_TEST_SUBJECT = "S2"
SPLITS = (
    "train_fixed",
    "test_fixed",
    *(f"{kind}_loso{k}" for k in range(1, 5) for kind in ("train", "test")),
)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
# The synthetic kitchens put frames under D/frames; accept D itself as the root too.
_FRAME_SUBFOLDER = "frames"


def split_subjects(split: str) -> tuple[str, ...]:
    """The subjects whose instances make up ``split``."""
    if split not in SPLITS:
        raise ValueError(f"GTEA-61 split {split!r} unknown; choose from {', '.join(SPLITS)}")
    kind, scheme = split.split("_")
    test = FIXED_TEST_SUBJECT if scheme == "fixed" else f"S{scheme[len('loso'):]}"
    if kind == "test":
        return (test,)
    return tuple(s for s in SUBJECTS if s != test)


def frame_root(root: str | Path) -> Path:
    """The folder holding S1..S4: ``root`` itself or its ``frames`` subfolder."""
    root = Path(root)
    for candidate in (root, root / _FRAME_SUBFOLDER):
        if any((candidate / s).is_dir() for s in SUBJECTS):
            return candidate
    raise AnnotationError(
        root,
        f"no subject folder ({', '.join(SUBJECTS)}) found here nor in {root / _FRAME_SUBFOLDER}"
        " (GTEA-61 expects <root>/<S1..S4>/<class>/<instance>/<frame>.png|jpg)",
    )


def _natural_key(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def _count_images(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: _natural_key(p.name))


def class_folders(root: str | Path) -> list[str]:
    """Sorted class folder names across all subjects: index = class id."""
    base = frame_root(root)
    names = {c.name for s in SUBJECTS if (base / s).is_dir() for c in _subdirs(base / s)}
    return sorted(names)


def _instance_frames(instance: Path) -> tuple[Path, int]:
    """(folder holding the images, their count) of one instance."""
    count = _count_images(instance)
    if count == 0 and (instance / "rgb").is_dir():
        return instance / "rgb", _count_images(instance / "rgb")
    return instance, count


def available_splits(root: str | Path) -> list[str]:
    """All splits whose test and train subjects exist under the root."""
    try:
        base = frame_root(root)
    except AnnotationError:
        return []
    present = {s for s in SUBJECTS if (base / s).is_dir()}
    return [s for s in SPLITS if set(split_subjects(s)) <= present]


def load(root: str | Path, split: str, require_labels: bool = False) -> pd.DataFrame:
    """Lists the instances of a split's subjects as the segment table.

    ``require_labels`` is accepted for a uniform API: every instance is labelled by its folder.
    """
    subjects = split_subjects(split)
    base = frame_root(root)
    class_ids = {name: i for i, name in enumerate(class_folders(base))}
    rows = []
    for subject in subjects:
        subject_dir = base / subject
        if not subject_dir.is_dir():
            raise AnnotationError(base, f"subject folder {subject} (needed by {split}) is missing")
        for class_dir in _subdirs(subject_dir):
            for instance in _subdirs(class_dir):
                frames_dir, count = _instance_frames(instance)
                if count == 0:
                    raise AnnotationError(instance, "instance folder holds no .png/.jpg frames")
                rows.append(
                    (f"{subject}/{class_dir.name}/{instance.name}", subject, class_dir.name,
                     count, str(frames_dir))
                )
    ids = [r[0] for r in rows]
    columns = {
        "segment_id": ids,
        "video_id": ids,
        "participant": [r[1] for r in rows],
        "start_frame": np.ones(len(rows), dtype=np.int64),
        "stop_frame": np.asarray([r[3] for r in rows], dtype=np.int64),
        # A folder is one action: all its frames, in the folder's own numbering.
        "start_time": np.zeros(len(rows)),
        "stop_time": np.asarray([r[3] for r in rows], dtype=np.float64) / FPS,
        "fps": FPS,
        "verb_class": np.full(len(rows), LABEL_MISSING, dtype=np.int64),
        "noun_class": np.full(len(rows), LABEL_MISSING, dtype=np.int64),
        "class_id": np.asarray([class_ids[r[2]] for r in rows], dtype=np.int64),
        "split": split,
    }
    extras = pd.DataFrame(
        {"class_name": [r[2] for r in rows], "frame_dir": [r[4] for r in rows]}, dtype=str
    )
    return finish_table(columns, extras)


def class_names(root: str | Path) -> dict[str, list[str]]:
    """Class folder names by class id."""
    return {"class": class_folders(root)}
