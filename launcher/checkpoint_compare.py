"""Bitwise comparison of checkpoints: two loaded states, or two checkpoint folders.

Tensors are equal when dtype, shape and every byte agree (so NaN equals the same NaN and
-0.0 differs from 0.0); containers are compared key by key and item by item; objects
without their own ``==`` by their attributes; any other leaf with ``==``. A difference is
reported by its path in the state (``module/trunk.conv1.weight``) with what differs. Files are
read weights-only, as fpar reads every checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fpar.engine.checkpoint_files import load_file

MAX_REPORTED = 20


def _tensor_difference(a: torch.Tensor, b: torch.Tensor) -> str | None:
    if a.dtype != b.dtype:
        return f"dtype {a.dtype} != {b.dtype}"
    if a.shape != b.shape:
        return f"shape {tuple(a.shape)} != {tuple(b.shape)}"
    a, b = a.detach().cpu().contiguous(), b.detach().cpu().contiguous()
    if a.numel() == 0:
        return None
    bytes_a = a.reshape(-1).view(torch.uint8).reshape(a.numel(), -1)
    bytes_b = b.reshape(-1).view(torch.uint8).reshape(b.numel(), -1)
    if torch.equal(bytes_a, bytes_b):
        return None
    changed = int((bytes_a != bytes_b).any(dim=1).sum())
    if a.is_floating_point():
        diff = (a.double() - b.double()).abs().nan_to_num(0.0)
        return f"{changed} of {a.numel()} values differ, max |a-b| {float(diff.max()):.3g}"
    return f"{changed} of {a.numel()} values differ"


def compare_states(a: Any, b: Any, path: str = "", out: list[str] | None = None,
                   counts: dict | None = None) -> list[str]:
    """Every difference between two loaded states, as ``path: what`` lines."""
    out = [] if out is None else out
    counts = {"tensors": 0} if counts is None else counts
    where = path or "<root>"
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            out.append(f"{where}: tensor vs {type(b if isinstance(a, torch.Tensor) else a).__name__}")
            return out
        counts["tensors"] += 1
        found = _tensor_difference(a, b)
        if found:
            out.append(f"{where}: {found}")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or \
                a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
            out.append(f"{where}: arrays differ")
    elif isinstance(a, dict) and isinstance(b, dict):
        for key in a.keys() | b.keys():
            sub = f"{path}/{key}" if path else str(key)
            if key not in a or key not in b:
                out.append(f"{sub}: only in {'the first' if key in a else 'the second'}")
            else:
                compare_states(a[key], b[key], sub, out, counts)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            out.append(f"{where}: length {len(a)} != {len(b)}")
        else:
            for i, (x, y) in enumerate(zip(a, b)):
                compare_states(x, y, f"{path}[{i}]", out, counts)
    elif type(a) is not type(b):
        out.append(f"{where}: {type(a).__name__} != {type(b).__name__}")
    elif type(a).__eq__ is object.__eq__ and hasattr(a, "__dict__"):
        # An object equal only to itself (DeepSpeed's loss scaler): compare its attributes.
        compare_states(vars(a), vars(b), path, out, counts)
    else:
        try:
            same = bool(a == b)
        except Exception:  # noqa: BLE001 - objects without a usable ==
            same = repr(a) == repr(b)
        if not same:
            out.append(f"{where}: {a!r:.80} != {b!r:.80}")
    return out


def compare_checkpoints(dir_a: str | Path, dir_b: str | Path, pattern: str = "*.pt",
                        ignore: tuple[str, ...] = (), trust: bool = False) -> dict:
    """Compares the ``pattern`` files of two checkpoint folders bitwise.

    Args:
        dir_a, dir_b: Checkpoint tag folders.
        pattern: Which files (the first folder's decide; one missing in the second counts).
        ignore: Top-level keys of the files that may differ (e.g. a saved config path).
        trust: Read the files with full unpickling (else weights-only, as fpar reads
            every checkpoint: :func:`fpar.engine.checkpoint_files.load_file`).

    Returns:
        ``{"identical", "files", "tensors", "differences"}``, at most ``MAX_REPORTED``
        differences listed (``difference_count`` has them all).
    """
    dir_a, dir_b = Path(dir_a), Path(dir_b)
    files = sorted(p.name for p in dir_a.glob(pattern))
    if not files:
        raise FileNotFoundError(f"{dir_a}: no {pattern} files to compare")
    differences: list[str] = []
    counts = {"tensors": 0}
    for name in files:
        other = dir_b / name
        if not other.is_file():
            differences.append(f"{name}: missing in {dir_b}")
            continue
        a = load_file(dir_a / name, trust)
        b = load_file(other, trust)
        if isinstance(a, dict) and isinstance(b, dict):
            a = {k: v for k, v in a.items() if k not in ignore}
            b = {k: v for k, v in b.items() if k not in ignore}
        compare_states(a, b, name, differences, counts)
    return {"identical": not differences, "files": files, "tensors": counts["tensors"],
            "difference_count": len(differences), "differences": differences[:MAX_REPORTED]}
