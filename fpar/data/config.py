"""DataConfig: where the shards are and how clips are sampled, augmented and batched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from shards.datasets import get_dataset


@dataclass
class DataConfig:
    """Settings of the shard reader, temporal sampling, augmentation and batching.

    Attributes:
        format: A registered dataset (``shards.datasets``: "epic55", "epic100", "gtea61",
            "egtea", ...); decides the label keys of a batch unless ``labels`` is given.
        train_shards: Folder of the training shards (with ``manifest.json``).
        val_shards: Folder of the validation shards, if any.
        test_shards: Folder of the test shards, if any.
        num_frames: Frames per clip (N), chosen from the M stored per segment.
        crop_size: Side of the square crop fed to the model (S).
        scales: Multi-scale corner crop scales, one picked per axis per clip.
        flip: Random horizontal flip in training (also negates flow-x and gives a flipped
            clip the mirrored label of ``mirror_pairs``).
        mirror_pairs: Per label key, the pairs of classes a horizontal flip turns into each
            other (``{verb: [[6, 7]]}``: move-left <-> move-right in the synthetic
            kitchens); the dataset configs declare theirs (none for EPIC, GTEA, EGTEA).
        test_crop_fraction: At test, the centre crop's side as a fraction of the stored
            frame's short side (224/256 as in Ego-RNN), resized to ``crop_size``.
        motion_size: Side of the output motion map; None keeps the stored map's scale
            relative to the frames (e.g. frames 256, maps 64, crop 224 -> 56).
        batch_size: Clips per training batch on each rank.
        eval_batch_size: Clips per evaluation batch on each rank.
        workers: DataLoader worker processes per rank (0 reads in the calling process).
        max_shortfall: Largest tolerated fraction of a rank's expected samples that are
            missing from its shards (truncated or corrupt tars); beyond it reading raises.
        use_flow: Whether batches carry the stored warp flow.
        reduced_decode: Decode JPEGs at half size when the crop is much smaller.
        labels: Label keys in a batch; None picks them from ``format``.
        prefetch_factor: Samples prefetched per worker.
    """

    format: str = "epic55"
    train_shards: Optional[str] = None
    val_shards: Optional[str] = None
    test_shards: Optional[str] = None
    num_frames: int = 7
    crop_size: int = 224
    scales: list[float] = field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])
    flip: bool = True
    mirror_pairs: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    test_crop_fraction: float = 0.875
    motion_size: Optional[int] = None
    batch_size: int = 8
    eval_batch_size: int = 8
    workers: int = 0
    max_shortfall: float = 0.0
    use_flow: bool = False
    reduced_decode: bool = True
    labels: Optional[list[str]] = None
    prefetch_factor: int = 4

    def __post_init__(self) -> None:
        get_dataset(self.format)  # an unknown name fails here, with the closest known one
        positive = ("num_frames", "crop_size", "batch_size", "eval_batch_size", "prefetch_factor")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"data.workers must be >= 0, got {self.workers}")
        if not self.scales or any(not 0.0 < s <= 1.0 for s in self.scales):
            raise ValueError(f"data.scales must be fractions in (0, 1], got {self.scales}")
        if not 0.0 < self.test_crop_fraction <= 1.0:
            raise ValueError(
                f"data.test_crop_fraction must be in (0, 1], got {self.test_crop_fraction}"
            )
        if not 0.0 <= self.max_shortfall <= 1.0:
            raise ValueError(f"data.max_shortfall must be in [0, 1], got {self.max_shortfall}")
        if self.motion_size is not None and self.motion_size < 1:
            raise ValueError(f"data.motion_size must be >= 1, got {self.motion_size}")
        self._check_mirror_pairs()
        if self.labels is not None:
            unknown = set(self.labels) - {"verb", "noun", "class"}
            if unknown:
                raise ValueError(f"data.labels: unknown label keys {sorted(unknown)}")

    def _check_mirror_pairs(self) -> None:
        for key, pairs in self.mirror_pairs.items():
            if key not in ("verb", "noun", "class"):
                raise ValueError(f"data.mirror_pairs: unknown label key {key!r}")
            classes = [c for pair in pairs for c in pair]
            if any(c < 0 for c in classes) or any(a == b for a, b in pairs):
                raise ValueError(f"data.mirror_pairs.{key}: pairs of two different class ids "
                                 f">= 0 expected, got {pairs}")
            if len(set(classes)) != len(classes):
                raise ValueError(f"data.mirror_pairs.{key}: a class is in two pairs: {pairs}")

    def mirrored(self, key: str, label: int) -> int:
        """The label of a horizontally flipped clip: the other class of its mirror pair."""
        for a, b in (self.mirror_pairs or get_dataset(self.format).mirror_pairs).get(key, ()):
            if label in (a, b):
                return b if label == a else a
        return label

    @property
    def label_keys(self) -> tuple[str, ...]:
        """The label keys each batch carries."""
        if self.labels is not None:
            return tuple(self.labels)
        return get_dataset(self.format).labels
