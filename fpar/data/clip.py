"""Turns one raw shard sample into a training/evaluation clip (tensors ready to batch).

Decoding is :func:`shards.schema.decode_sample`, the schema's own decoder: only the N frames
the clip uses are decoded (the image pack gives each frame's offset), and JPEGs are decoded
at 1/2, 1/4 or 1/8 size by libjpeg's DCT scaling when even the smallest crop stays at least
``crop_size`` pixels at that size, which spares decoding pixels the crop would throw away.
"""

from __future__ import annotations

import json
from typing import Any

import cv2
import numpy as np

from fpar.data.config import DataConfig
from fpar.data.sampling import rng_for, temporal_indices
from fpar.data.views import View, side_fraction, view_box
from fpar.data.transforms import (
    crop_flow,
    crop_frames,
    crop_maps,
    map_size,
    train_box,
)
from shards.schema import (
    FLOW_EXT,
    FRAMES_EXT,
    META_EXT,
    MOTION_EXT,
    STACKED_MOTION_EXT,
    SampleBounds,
    SchemaError,
    check_record,
    decode_sample,
    segment_id_from_key,
)

# Meta field of the schema record -> batch label key.
LABEL_FIELDS = {"verb": "verb_class", "noun": "noun_class", "class": "class_id"}


class UndecodableSample(ValueError):
    """A sample whose members are present but cannot be decoded."""


def required_members(use_flow: bool) -> tuple[str | tuple[str, ...], ...]:
    """The tar members a sample must have to be decoded (a tuple: any one of them)."""
    # Schema 2 samples hold their maps in one PNG instead; either will do.
    return (META_EXT, FRAMES_EXT, (MOTION_EXT, STACKED_MOTION_EXT)) + ((FLOW_EXT,) if use_flow else ())


def reduction(short_side: int, smallest_fraction: float, crop_size: int) -> int:
    """Largest JPEG downscale (1, 2, 4, 8) keeping the smallest crop >= ``crop_size`` px."""
    factor = 1
    while factor < 8 and short_side * smallest_fraction / (factor * 2) >= crop_size:
        factor *= 2
    return factor


def make_clip(raw: dict[str, Any], cfg: DataConfig, *, train: bool, seed: int, epoch: int,
              frames_out: Any = None, view: View | None = None,
              bounds: SampleBounds | None = None) -> dict:
    """Decodes, samples and augments one raw sample.

    Args:
        raw: Tar members by extension, as :mod:`fpar.data.reader` groups them (with
            ``__key__``).
        cfg: Data settings.
        train: Random frames/crop/flip (True) or centre frames and centre crop (False).
        seed: Run seed; with ``epoch`` and the sample key it fixes every random draw.
        epoch: Epoch number.
        frames_out: Optional uint8 (T, S, S, 3) array the frames are cropped into (a
            clip's rows of a batch buffer: no copy when batching).
        view: At test, the view to take (:mod:`fpar.data.views`); None: the chunk
            centres and the centre crop.
        bounds: What the folder's manifest allows a sample to announce (counts and sizes
            are checked against it before anything is allocated).

    Returns:
        One clip of the loader batch (:mod:`fpar.data.batch`): ``frames`` uint8
        (T, S, S, 3) RGB, ``motion`` uint8 (T, s, s), ``flow`` uint8 (T, 10, S, S) when
        ``cfg.use_flow``, one int per label key (a flipped clip's is the other class of
        its ``cfg.mirror_pairs`` pair), ``segment_id`` str.

    Raises:
        UndecodableSample: naming the sample key when anything cannot be decoded.
    """
    key = str(raw.get("__key__", "?"))
    try:
        return _make_clip(raw, cfg, train, seed, epoch, key, frames_out, view, bounds)
    except SchemaError as err:  # decode_sample's message names the sample already
        raise UndecodableSample(str(err)) from err
    except UndecodableSample as err:
        raise UndecodableSample(f"sample {key}: {err}") from err
    except (KeyError, ValueError, TypeError, IndexError, cv2.error) as err:
        raise UndecodableSample(f"sample {key}: {type(err).__name__}: {err}") from err


def _make_clip(raw: dict, cfg: DataConfig, train: bool, seed: int, epoch: int, key: str,
               frames_out: Any, view: View | None, bounds: SampleBounds | None) -> dict:
    meta = json.loads(bytes(raw[META_EXT]).decode("utf-8"))
    if not isinstance(meta, dict):
        raise UndecodableSample(f"record is a JSON {type(meta).__name__}, not an object")
    try:
        count = check_record(meta, bounds)
    except SchemaError as err:
        raise UndecodableSample(str(err)) from err  # named by make_clip
    height, width = meta["frame_size"]
    rng = rng_for(seed, epoch, key) if train else None
    if train:
        picks = temporal_indices(count, cfg.num_frames, True, rng)
        box = train_box(width, height, cfg.scales, cfg.flip, rng)
        smallest = min(cfg.scales)
    else:
        view = view or View()
        picks = temporal_indices(count, cfg.num_frames, False, clip=view.clip, clips=view.clips)
        box = view_box(view, width, height, cfg.test_crop_fraction)
        smallest = side_fraction(view, cfg.test_crop_fraction)
    factor = reduction(min(height, width), smallest, cfg.crop_size) if cfg.reduced_decode else 1
    # Frames are decoded one at a time as the crop reads them: one frame in cache at once.
    sample = decode_sample({**raw, META_EXT: meta}, picks, reduction=factor,
                           flow=cfg.use_flow, stacked=False, bounds=bounds)
    if frames_out is None:
        frames_out = np.empty((len(picks), cfg.crop_size, cfg.crop_size, 3), dtype=np.uint8)

    map_h, map_w = sample["motion"].shape[1:]
    side = map_size(cfg.motion_size, cfg.crop_size, min(height, width), min(map_h, map_w))
    clip = {"frames": crop_frames(sample["frames"], box, cfg.crop_size, out=frames_out),
            "motion": crop_maps(sample["motion"], box, side)}
    if cfg.use_flow:
        if "flow" not in sample:
            raise UndecodableSample(f"no {FLOW_EXT} member (shards built without flow)")
        clip["flow"] = crop_flow(sample["flow"], box, cfg.crop_size)
    for label, field in LABEL_FIELDS.items():
        if label in cfg.label_keys:
            value = int(meta.get(field, -1))
            # A mirrored clip shows the mirrored action (move-left becomes move-right).
            clip[label] = cfg.mirrored(label, value) if box.flip and value >= 0 else value
    segment_id = meta.get("segment_id")
    clip["segment_id"] = str(segment_id) if segment_id is not None else segment_id_from_key(key)
    return clip
