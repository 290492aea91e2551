"""Figures of a run, each a pure function from arrays to a PNG file.

Kept free of run-directory knowledge so that the report page, the demo and notebooks can
call them on whatever they have in hand. Matplotlib runs on the Agg backend: no display
is needed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Mapping, Sequence, TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

F = TypeVar("F", bound=Callable)

#: Classes shown at most by the per-class and confusion figures (the most frequent ones);
#: beyond this the labels stop being readable.
MAX_CLASSES = 40


def _literal_text(draw: F) -> F:
    """Draws every text of a figure as written: class names and ids are data, and a ``$``
    in them would otherwise start TeX math (mathtext, or LaTeX under ``text.usetex``)."""
    @functools.wraps(draw)
    def literal(*args, **kwargs):
        with matplotlib.rc_context({"text.usetex": False, "text.parse_math": False}):
            return draw(*args, **kwargs)
    return literal  # type: ignore[return-value]


def _save(fig: plt.Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _class_name(names: Sequence[str], c: int) -> str:
    return str(names[c]) if 0 <= c < len(names) else str(c)


@_literal_text
def training_curves(steps: Sequence[Mapping], epochs: Sequence[Mapping], path: Path) -> Path:
    """Plots the training loss and its parts per step, and validation metrics per epoch.

    Args:
        steps: Step records of ``metrics.jsonl`` (``step``, ``loss``, optional ``parts``
            dict of named loss terms); a ``None`` loss (a non-finite step) leaves a gap.
        epochs: Epoch records (``epoch``, optional ``val`` dict of metric -> value).
        path: Output PNG.

    Returns:
        ``path``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ordered = sorted(steps, key=lambda r: r["step"])
    if ordered:
        x = np.array([r["step"] for r in ordered], dtype=float)
        y = np.array([np.nan if r.get("loss") is None else r["loss"] for r in ordered], dtype=float)
        axes[0].plot(x, y, lw=1.2, label="loss")
        parts = sorted({k for r in ordered for k in r.get("parts", {})
                        if str(k).startswith("loss")})
        for name in parts:
            py = np.array([r.get("parts", {}).get(name, np.nan) for r in ordered], dtype=float)
            axes[0].plot(x, py, lw=0.8, alpha=0.8, label=name)
        axes[0].legend(fontsize=7)
    else:
        axes[0].text(0.5, 0.5, "no training steps recorded", ha="center", va="center")
    axes[0].set(title="training loss", xlabel="step")
    vals = [r for r in epochs if r.get("val")]
    keys = sorted({k for r in vals for k, v in r["val"].items() if isinstance(v, (int, float))})
    for key in keys:
        pts = [(r["epoch"] + 1, r["val"][key]) for r in vals if key in r["val"]]
        ex, ey = np.array(pts, dtype=float).T
        axes[1].plot(ex, ey, marker="o", label=key)
    if keys:
        axes[1].legend(fontsize=7)
    else:
        axes[1].text(0.5, 0.5, "no validation during training", ha="center", va="center")
    axes[1].set(title="validation", xlabel="epochs done")
    return _save(fig, path)


def _shown_classes(labels: np.ndarray, extra: np.ndarray | None, max_classes: int) -> np.ndarray:
    """The classes of ``labels`` (and ``extra``), the most frequent ``max_classes`` of them."""
    pool = labels if extra is None else np.concatenate([labels, extra])
    classes, counts = np.unique(pool, return_counts=True)
    if len(classes) > max_classes:
        keep = np.argsort(-counts, kind="stable")[:max_classes]
        classes = np.sort(classes[keep])
    return classes


def _check_pairs(labels: np.ndarray, preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, preds = np.asarray(labels).astype(np.int64), np.asarray(preds).astype(np.int64)
    if labels.shape != preds.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and predictions {preds.shape} must be equal 1-D")
    if len(labels) == 0:
        raise ValueError("no labelled segments to plot")
    return labels, preds


@_literal_text
def per_class_accuracy(labels: np.ndarray, preds: np.ndarray, names: Sequence[str], path: Path,
                       title: str, max_classes: int = MAX_CLASSES) -> Path:
    """Bar chart of the recall of every class present in ``labels`` (segment count in
    brackets); with more than ``max_classes`` classes, the most frequent ones."""
    labels, preds = _check_pairs(labels, preds)
    present = _shown_classes(labels, None, max_classes)
    acc = np.array([(preds[labels == c] == c).mean() for c in present])
    counts = np.array([(labels == c).sum() for c in present])
    total = len(np.unique(labels))
    if len(present) < total:
        title = f"{title} ({len(present)} most frequent of {total} classes)"
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(present) + 2), 3.6))
    ax.bar(range(len(present)), acc, color="tab:blue")
    ax.set_xticks(range(len(present)))
    ax.set_xticklabels([f"{_class_name(names, c)} ({n})" for c, n in zip(present, counts)],
                       rotation=60, ha="right", fontsize=7)
    ax.set(ylim=(0, 1), ylabel="accuracy", title=title)
    return _save(fig, path)


@_literal_text
def confusion_matrix(labels: np.ndarray, preds: np.ndarray, names: Sequence[str], path: Path,
                     title: str, max_classes: int = MAX_CLASSES) -> Path:
    """Row-normalised confusion matrix over the classes in labels or predictions; with
    more than ``max_classes`` of them, the most frequent ones (other rows and columns
    are left out, so rows may sum to less than 1)."""
    labels, preds = _check_pairs(labels, preds)
    classes = _shown_classes(labels, preds, max_classes)
    index = {int(c): i for i, c in enumerate(classes)}
    mat = np.zeros((len(classes), len(classes)))
    for t, p in zip(labels, preds):
        if t in index and p in index:
            mat[index[t], index[p]] += 1
    rows = np.array([(labels == c).sum() for c in classes], dtype=float)
    mat = mat / np.maximum(rows, 1)[:, None]
    total = len(np.unique(np.concatenate([labels, preds])))
    if len(classes) < total:
        title = f"{title} ({len(classes)} most frequent of {total} classes)"
    size = max(3.5, 0.3 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(mat, cmap="Blues", vmin=0, vmax=1)
    ticks = [_class_name(names, int(c)) for c in classes]
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(ticks, rotation=90, fontsize=7)
    ax.set_yticks(range(len(classes)))
    ax.set_yticklabels(ticks, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(fig, path)


def _fading(name: str) -> ListedColormap:
    """``name``'s colours with opacity rising from 0 at value 0: static areas leave the
    frame visible, moving ones are painted over it."""
    colours = plt.get_cmap(name)(np.linspace(0, 1, 256))
    colours[:, -1] = np.linspace(0.0, 0.85, 256)
    return ListedColormap(colours)


def _overlay_row(ax_row, frames: np.ndarray, maps: np.ndarray | None, cmap, label: str,
                 alpha: float | None = 0.5) -> None:
    for t, ax in enumerate(ax_row):
        ax.imshow(frames[t])
        if maps is not None:
            h, w = frames[t].shape[:2]
            ax.imshow(maps[t], cmap=cmap, alpha=alpha, extent=(0, w, h, 0), vmin=0, vmax=1,
                      interpolation="bilinear")
        ax.set_xticks([])
        ax.set_yticks([])
        if t == 0:
            ax.set_ylabel(label, fontsize=8)


def _check_maps(frames: np.ndarray, named: Mapping[str, np.ndarray]) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got shape {frames.shape}")
    for name, maps in named.items():
        if maps.ndim != 3 or len(maps) != len(frames):
            raise ValueError(f"{name} must be (T={len(frames)}, h, w), got shape {maps.shape}")


@_literal_text
def attention_overlays(frames: np.ndarray, attention: np.ndarray, path: Path, title: str) -> Path:
    """Frames (T,H,W,3 uint8) with their class-activation / attention maps (T,s,s) on top.

    Each frame's map is scaled to its own maximum: attention is a distribution over
    positions, so its absolute level says little.
    """
    attention = np.asarray(attention, dtype=float)
    _check_maps(frames, {"attention": attention})
    peak = attention.reshape(len(attention), -1).max(1)
    scaled = attention / np.where(peak > 0, peak, 1.0)[:, None, None]
    t = len(frames)
    fig, axes = plt.subplots(2, t, figsize=(1.8 * t, 3.8), squeeze=False)
    _overlay_row(axes[0], frames, None, None, "frames")
    _overlay_row(axes[1], frames, scaled, "jet", "attention")
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


@_literal_text
def motion_maps(frames: np.ndarray, target: np.ndarray, predicted: np.ndarray, path: Path,
                title: str, fraction: np.ndarray | None = None) -> Path:
    """Frames, the MS head's target (T,s,s), its prediction (T,s,s) and optionally the
    stored moving-fraction map the target came from (T,h,w); all values in [0, 1]."""
    maps = {"target": np.asarray(target, float), "predicted": np.asarray(predicted, float)}
    if fraction is not None:
        maps = {"moving fraction": np.asarray(fraction, float), **maps}
    _check_maps(frames, maps)
    t = len(frames)
    rows = 1 + len(maps)
    fig, axes = plt.subplots(rows, t, figsize=(1.8 * t, 1.8 * rows), squeeze=False)
    _overlay_row(axes[0], frames, None, None, "frames")
    fading = _fading("autumn")
    for row, (name, values) in enumerate(maps.items(), start=1):
        _overlay_row(axes[row], frames, values, fading, name, alpha=None)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


@_literal_text
def split_comparison(results: Mapping[str, Mapping[str, float]], path: Path, title: str) -> Path:
    """Grouped bars: one group per metric, one bar per split (e.g. seen vs unseen)."""
    splits = list(results)
    metrics = list(dict.fromkeys(m for r in results.values() for m in r))
    if not splits or not metrics:
        raise ValueError("split_comparison needs at least one split with metrics")
    width = 0.8 / len(splits)
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(metrics) + 2), 3.6))
    for i, split in enumerate(splits):
        values = [results[split].get(m, np.nan) for m in metrics]
        bars = ax.bar(np.arange(len(metrics)) + i * width, np.nan_to_num(values), width,
                      label=split)
        ax.bar_label(bars, labels=[f"{v:.1f}" if np.isfinite(v) else "n/a" for v in values],
                     fontsize=6)
    ax.set_xticks(np.arange(len(metrics)) + width * (len(splits) - 1) / 2)
    ax.set_xticklabels(metrics, rotation=30, ha="right", fontsize=8)
    top = np.nanmax([results[s].get(m, np.nan) for s in splits for m in metrics] + [1.0])
    ax.set(ylabel="%", title=title, ylim=(0, top * 1.15))
    ax.legend()
    return _save(fig, path)
