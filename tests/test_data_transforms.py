"""Augmentation, temporal sampling and the epoch plan of the shard reader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fpar.data.accounting import DataShortfallError, fill_batches
from fpar.data.batch import IMAGENET_MEAN, normalise_frames
from fpar.data.clip import make_clip, reduction
from fpar.data.config import DataConfig
from fpar.data.plan import rank_plan, split_range
from fpar.data.sampling import rng_for, temporal_indices
from fpar.data.transforms import (
    CropBox,
    crop_flow,
    crop_frames,
    crop_maps,
    map_size,
    centre_box,
    train_box,
)
from shards.schema import encode_sample, sample_key

H, W, STRIDE = 64, 80, 4


def ramp_clip():
    """Frames, maps (stride 4) and flow (stride 2) whose values are the source position.

    Frames: red = x / W, green = y / H at pixel centres. Maps 0/1: x / W and y / H. Flow
    channel 0 (x) = x / W, channel 1 (y) = y / H. A crop that lands differently on any of
    them shows up as a value that disagrees with the box.
    """

    def ramps(h, w):
        xs = (np.arange(w) + 0.5) / w
        ys = (np.arange(h) + 0.5) / h
        return np.broadcast_to(xs, (h, w)), np.broadcast_to(ys[:, None], (h, w))

    fx, fy = ramps(H, W)
    frame = np.stack([fx, fy, np.zeros_like(fx)], axis=-1)
    frames = np.round(frame * 255).astype(np.uint8)
    mx, my = ramps(H // STRIDE, W // STRIDE)
    maps = np.round(np.stack([mx, my]) * 255).astype(np.uint8)
    gx, gy = ramps(H // 2, W // 2)
    flow = np.zeros((1, 10, H // 2, W // 2), np.float32)
    flow[0, 0], flow[0, 1] = gx, gy
    return frames, maps, flow


def expected_source(box: CropBox, size: int):
    """Relative source x (per output column) and y (per output row) of ``box``."""
    t = (np.arange(size) + 0.5) / size
    xs = box.x0 + box.w * ((1 - t) if box.flip else t)
    ys = box.y0 + box.h * t
    return xs, ys


def all_boxes():
    boxes = [centre_box(W, H, 0.875)]
    for seed in range(60):
        boxes.append(train_box(W, H, [1.0, 0.875, 0.75, 0.66], True, np.random.default_rng(seed)))
    return boxes


def test_train_boxes_cover_corners_scales_and_flips():
    boxes = all_boxes()[1:]
    assert {b.flip for b in boxes} == {True, False}
    widths = {round(b.w * W) for b in boxes}
    assert widths == {int(H * s) for s in (1.0, 0.875, 0.75, 0.66)}
    lefts = {round(b.x0 * W) for b in boxes}
    assert 0 in lefts and any(round(b.x0 * W + b.w * W) == W for b in boxes)
    assert any(0 < b.x0 and b.x0 + b.w < 1 for b in boxes)  # the centre position
    assert any(abs(b.w * W - b.h * H) > 1 for b in boxes)  # scales differ per axis


@pytest.mark.parametrize("size", [32, 8])
def test_same_crop_and_flip_land_on_frames_motion_and_flow(size):
    frames, maps, flow = ramp_clip()
    for box in all_boxes():
        out_frames = crop_frames([frames], box, size)[0] / 255.0
        side = map_size(None, size, H, H // STRIDE)
        out_maps = crop_maps(maps, box, side) / 255.0
        out_flow = crop_flow(flow, box, size)[0]
        # Half a source pixel of interpolation at the border, plus uint8 rounding.
        tol = 1.0 / (box.w * W // STRIDE) + 0.02
        xs, ys = expected_source(box, size)
        np.testing.assert_allclose(out_frames[..., 0], np.broadcast_to(xs, (size, size)), atol=tol)
        np.testing.assert_allclose(out_frames[..., 1], np.broadcast_to(ys[:, None], (size, size)), atol=tol)
        mxs, mys = expected_source(box, side)
        np.testing.assert_allclose(out_maps[0], np.broadcast_to(mxs, (side, side)), atol=tol)
        np.testing.assert_allclose(out_maps[1], np.broadcast_to(mys[:, None], (side, side)), atol=tol)
        sign = -1.0 if box.flip else 1.0
        np.testing.assert_allclose(out_flow[0], sign * np.broadcast_to(xs, (size, size)), atol=tol)
        np.testing.assert_allclose(out_flow[1], np.broadcast_to(ys[:, None], (size, size)), atol=tol)


def test_flip_negates_flow_x_only_and_mirrors():
    flow = np.zeros((2, 10, 8, 8), np.float32)
    flow[:, 0::2] = 0.5
    flow[:, 1::2] = 0.25
    flow[:, :, :, :2] += 0.1  # left edge marker
    box = CropBox(0.0, 0.0, 1.0, 1.0, flip=False)
    kept = crop_flow(flow, box, 8)
    flipped = crop_flow(flow, CropBox(0.0, 0.0, 1.0, 1.0, flip=True), 8)
    np.testing.assert_allclose(kept, flow, atol=1e-5)
    np.testing.assert_allclose(flipped[:, 0::2], -flow[:, 0::2, :, ::-1], atol=1e-5)
    np.testing.assert_allclose(flipped[:, 1::2], flow[:, 1::2, :, ::-1], atol=1e-5)


def test_shapes_and_normalisation():
    frames = np.zeros((3, H, W, 3), np.uint8)
    frames[..., :] = np.round(np.array(IMAGENET_MEAN) * 255).astype(np.uint8)
    box = centre_box(W, H, 0.875)
    cropped = crop_frames(list(frames), box, 24)
    assert cropped.shape == (3, 24, 24, 3) and cropped.dtype == np.uint8
    tensor = normalise_frames(torch.from_numpy(cropped)[None])
    assert tensor.shape == (1, 3, 3, 24, 24) and tensor.dtype == torch.float32
    assert tensor.abs().max() < 0.02
    assert crop_maps(np.zeros((3, 16, 20), np.uint8), box, 6).shape == (3, 6, 6)
    assert crop_flow(np.zeros((3, 10, 32, 40), np.float32), box, 24).shape == (3, 10, 24, 24)


def test_test_box_is_centred_square():
    box = centre_box(W, H, 0.875)
    assert (box.x0 * W, box.y0 * H, box.w * W, box.h * H) == (12, 4, 56, 56)
    assert not box.flip


def make_raw(key="P01_1_0", count=8):
    rng = np.random.default_rng(3)
    frames = (rng.random((count, H, W, 3)) * 255).astype(np.uint8)
    motion = (rng.random((count, H // STRIDE, W // STRIDE)) * 255).astype(np.uint8)
    flow = (rng.random((count, 10, H // 2, W // 2)) * 255).astype(np.uint8)
    meta = {"segment_id": key, "verb_class": 3, "noun_class": 9, "class_id": -1}
    raw = encode_sample(meta, frames, motion, flow)
    raw["__key__"] = sample_key(key)
    return raw


def test_clip_draws_depend_only_on_seed_epoch_and_key():
    cfg = DataConfig(crop_size=24, num_frames=3, use_flow=True)
    raw = make_raw()
    a = make_clip(raw, cfg, train=True, seed=1, epoch=0)
    b = make_clip(raw, cfg, train=True, seed=1, epoch=0)
    c = make_clip(raw, cfg, train=True, seed=1, epoch=1)
    for key in ("frames", "motion", "flow"):
        assert np.array_equal(a[key], b[key]) and a[key].dtype == np.uint8
    assert not np.array_equal(a["frames"], c["frames"])
    assert a["frames"].shape == (3, 24, 24, 3) and a["motion"].shape == (3, 6, 6)
    assert a["flow"].shape == (3, 10, 24, 24)
    assert (a["verb"], a["noun"], a["segment_id"]) == (3, 9, "P01_1_0")


def test_centre_crop_at_test_is_deterministic():
    cfg = DataConfig(crop_size=24, num_frames=3)
    raw = make_raw()
    a = make_clip(raw, cfg, train=False, seed=1, epoch=0)
    b = make_clip(raw, cfg, train=False, seed=5, epoch=9)
    assert np.array_equal(a["frames"], b["frames"]) and np.array_equal(a["motion"], b["motion"])


def test_reduced_decoding_only_when_the_crop_stays_large():
    assert reduction(256, 0.66, 224) == 1
    assert reduction(256, 0.66, 64) == 2
    assert reduction(512, 0.875, 112) == 4
    frames, _, _ = ramp_clip()
    raw = encode_sample({"segment_id": "ramp"}, np.stack([frames] * 4),
                        np.zeros((4, H // STRIDE, W // STRIDE), np.uint8))
    raw["__key__"] = "ramp"
    full = make_clip(raw, DataConfig(crop_size=8, num_frames=2, reduced_decode=False),
                     train=False, seed=0, epoch=0)
    reduced = make_clip(raw, DataConfig(crop_size=8, num_frames=2), train=False, seed=0, epoch=0)
    # The same region, decoded at half size: equal up to JPEG and resampling noise.
    difference = np.abs(full["frames"].astype(np.float32) - reduced["frames"].astype(np.float32))
    assert difference.mean() < 3 and difference.max() < 12


@pytest.mark.parametrize("stored,wanted", [(8, 8), (32, 7), (30, 4), (3, 7)])
def test_temporal_sampling_one_frame_per_chunk(stored, wanted):
    centre = temporal_indices(stored, wanted, train=False)
    assert len(centre) == wanted and np.all(np.diff(centre) >= 0)
    bounds = np.arange(wanted + 1) * stored / wanted
    draws = [temporal_indices(stored, wanted, True, np.random.default_rng(s)) for s in range(50)]
    for idx in [centre, *draws]:
        assert np.all(idx >= np.floor(bounds[:-1])) and np.all(idx < np.maximum(bounds[1:], 1))
    expected_centre = np.floor((np.arange(wanted) + 0.5) * stored / wanted)
    np.testing.assert_array_equal(centre, expected_centre)
    if stored == wanted:
        assert all(np.array_equal(d, np.arange(stored)) for d in draws)
    elif stored > 2 * wanted:
        assert len({tuple(d) for d in draws}) > 10  # random inside the chunks


def test_rng_is_stable_and_separates_parts():
    a = rng_for(1, 2, "key").random(3)
    np.testing.assert_array_equal(a, rng_for(1, 2, "key").random(3))
    assert not np.array_equal(a, rng_for(1, 3, "key").random(3))
    assert not np.array_equal(a, rng_for(1, 2, "other").random(3))


def test_split_range():
    assert [split_range(8, 3, r) for r in range(3)] == [(0, 3), (3, 6), (6, 8)]


def test_epoch_order_does_not_depend_on_the_number_of_ranks():
    # 11 samples, global batch 4: 3 steps, the last filled with 1 repeat.
    one = rank_plan(11, train=True, seed=0, epoch=2, rank=0, world_size=1, batch_size=4)
    two = [rank_plan(11, train=True, seed=0, epoch=2, rank=r, world_size=2, batch_size=2) for r in range(2)]
    four = [rank_plan(11, train=True, seed=0, epoch=2, rank=r, world_size=4, batch_size=1) for r in range(4)]
    assert one.total == 12 and one.n_rank == 11 and sorted(one.indices[:11]) == list(range(11))
    for plans, b in ((two, 2), (four, 1)):
        merged = [i for step in range(3) for p in plans for i in p.indices[step * b : (step + 1) * b]]
        assert merged == list(one.indices)
        repeats = sum(len(p.repeats) for p in plans)
        assert repeats == 1
    assert rank_plan(11, train=True, seed=0, epoch=3, rank=0, world_size=1, batch_size=4).indices != one.indices


def test_evaluation_plan_keeps_the_folder_order():
    plans = [rank_plan(8, train=False, seed=0, epoch=0, rank=r, world_size=3, batch_size=2) for r in range(3)]
    assert [list(p.indices) for p in plans] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert all(not p.repeats for p in plans)


def _parts(first: int, names: list[str | None]):
    """Assembled batch parts whose rows hold a clip named ``name`` (None: lost)."""
    from fpar.data.assemble import BatchParts

    rows = len(names)
    parts = BatchParts(first, [], [], torch.full((rows, 1), -1), maps={"motion": torch.full((rows, 2), -1)},
                       labels={"verb": [-1] * rows}, segment_id=[""] * rows, repeat=[True] * rows)
    for row, name in enumerate(names):
        parts.items.append({"pos": first + row, "repeat": False, "status": "ok" if name else "missing",
                            "problem": None if name else "lost"})
        if name:
            value = ord(name)
            parts.good.append(row)
            parts.frames[row], parts.maps["motion"][row] = value, value
            parts.labels["verb"][row], parts.segment_id[row], parts.repeat[row] = value, name, False
    return parts


def test_batches_without_a_decoded_clip_borrow_from_the_next_then_the_last():
    names = [[None, None], ["a", None], ["b", "c"], [None, None]]
    batches = list(fill_batches([_parts(2 * i, n) for i, n in enumerate(names)], rank=0))
    assert [b.segment_id for b in batches] == [["a", "a"], ["a", "a"], ["b", "c"], ["c", "c"]]
    assert [b.repeat for b in batches] == [[True, True], [False, True], [False, False], [True, True]]
    for batch in batches:  # every buffer row and label follows the clip it copies
        values = [ord(name) for name in batch.segment_id]
        assert batch.frames[:, 0].tolist() == values == batch.labels["verb"]
        assert batch.maps["motion"][:, 1].tolist() == values
    with pytest.raises(DataShortfallError, match="not one decodable sample"):
        list(fill_batches([_parts(0, [None]), _parts(1, [None])], rank=1))
