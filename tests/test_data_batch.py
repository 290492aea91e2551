"""The batch contract: uint8 loader batches, and the model batch made from them on the device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fpar.data.assemble import assemble, loader_batch, local_allocator
from fpar.data.batch import IMAGENET_MEAN, IMAGENET_STD, normalise_frames, prepare_batch, random_batch
from fpar.data.clip import make_clip
from fpar.data.config import DataConfig
from fpar.data.plan import RankPlan
from fpar.data.reader import RawInput
from shards.schema import decode_sample, encode_sample, pack_images, sample_key

H, W = 64, 80


def raw_sample(key: str, seed: int, count: int = 6, flow: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    frames = (rng.random((count, H, W, 3)) * 255).astype(np.uint8)
    motion = (rng.random((count, H // 4, W // 4)) * 255).astype(np.uint8)
    stack = (rng.random((count, 10, H // 2, W // 2)) * 255).astype(np.uint8) if flow else None
    raw = encode_sample({"segment_id": key, "verb_class": seed % 5, "noun_class": 2, "class_id": -1},
                        frames, motion, stack)
    raw["__key__"] = sample_key(key)
    return raw


class ListReader:
    """Raw samples by index, as :class:`fpar.data.reader.SampleReader` gives them."""

    def __init__(self, raws: list[dict | None]):
        self.raws = raws

    def read(self, index: int) -> RawInput:
        raw = self.raws[index]
        return RawInput(index, raw, None if raw is not None else "lost")


def assembled(raws: list, cfg: DataConfig, train: bool, epoch: int = 0):
    return assemble(ListReader(raws), RankPlan(tuple(range(len(raws)))), 0, len(raws), cfg,
                    train=train, seed=4, epoch=epoch, allocate=local_allocator(False))


def reference_model_batch(clips: list[dict]) -> dict:
    """The model batch as the loader used to build it: planar RGB, (v - 255 mean) / (255 std)
    in float32 per channel, maps / 255, flow q * 2/255 - 1 (flipped clips: x negated)."""
    frames = torch.stack([torch.from_numpy(np.ascontiguousarray(c["frames"].transpose(0, 3, 1, 2))) for c in clips])
    mean = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1) * 255.0)
    out = {"frames": (frames.float() - mean) * inv_std,
           "motion": torch.stack([torch.from_numpy(np.ascontiguousarray(c["motion"])) for c in clips]).float() / 255.0}
    if "flow" in clips[0]:
        out["flow"] = torch.stack([torch.from_numpy(c["flow"]) for c in clips]).float() * (2.0 / 255.0) - 1.0
    return out


@pytest.mark.parametrize("train", [True, False])
def test_the_model_sees_the_same_normalised_tensors_as_before(train):
    cfg = DataConfig(crop_size=32, num_frames=3, use_flow=True)
    raws = [raw_sample(f"s{i}", i) for i in range(4)]
    clips = [make_clip(raw, cfg, train=train, seed=4, epoch=2) for raw in raws]
    loader = loader_batch(assembled(raws, cfg, train, epoch=2))
    assert loader["frames"].dtype == torch.uint8 and loader["frames"].shape == (4, 3, 32, 32, 3)
    assert loader["motion"].dtype == torch.uint8 and loader["flow"].dtype == torch.uint8
    model = prepare_batch(loader, torch.device("cpu"))
    expected = reference_model_batch(clips)
    assert model["frames"].shape == (4, 3, 3, 32, 32) and model["frames"].is_contiguous()
    for key in ("frames", "motion", "flow"):
        torch.testing.assert_close(model[key], expected[key], rtol=0, atol=2e-6)
    assert model["verb"].tolist() == [0, 1, 2, 3] and model["segment_id"] == ["s0", "s1", "s2", "s3"]


def test_flipped_uint8_flow_x_is_exactly_negated():
    from fpar.data.transforms import CropBox, crop_flow

    q = np.random.default_rng(0).integers(0, 256, (2, 10, 8, 8)).astype(np.uint8)
    kept = crop_flow(q, CropBox(0.0, 0.0, 1.0, 1.0, flip=False), 8)
    flipped = crop_flow(q, CropBox(0.0, 0.0, 1.0, 1.0, flip=True), 8)
    assert kept.dtype == flipped.dtype == np.uint8 and np.array_equal(kept, q)
    to_units = lambda v: torch.from_numpy(v).float() * (2.0 / 255.0) - 1.0  # noqa: E731
    torch.testing.assert_close(to_units(flipped)[:, 0::2], -to_units(q)[:, 0::2].flip(-1), rtol=0, atol=1e-6)
    torch.testing.assert_close(to_units(flipped)[:, 1::2], to_units(q)[:, 1::2].flip(-1), rtol=0, atol=0)


def test_prepare_batch_casts_floats_to_the_model_dtype_and_keeps_labels():
    batch = random_batch(2, 3, 16, {"verb": 5}, seed=1)
    model = prepare_batch(batch, torch.device("cpu"), torch.bfloat16)
    assert model["frames"].dtype == model["motion"].dtype == torch.bfloat16
    assert model["verb"].dtype == torch.int64 and model["is_repeat"].dtype == torch.bool
    with pytest.raises(ValueError, match="uint8"):
        normalise_frames(torch.zeros(1, 2, 4, 4, 3))


def test_clips_whose_maps_differ_in_shape_are_named():
    cfg = DataConfig(crop_size=30, num_frames=3)  # maps at crop x 16/64 -> 8 px, x 16/66 -> 7 px
    rng = np.random.default_rng(0)
    taller = encode_sample({"segment_id": "b", "verb_class": 1, "noun_class": 2, "class_id": -1},
                           (rng.random((6, 66, W, 3)) * 255).astype(np.uint8),
                           (rng.random((6, 66 // 4, W // 4)) * 255).astype(np.uint8))
    taller["__key__"] = sample_key("b")
    with pytest.raises(ValueError, match=r"\['a', 'b'\]"):
        assembled([raw_sample("a", 1, flow=False), taller], cfg, train=False)


def test_batches_are_cropped_in_place_and_skip_lost_samples_at_evaluation():
    cfg = DataConfig(crop_size=32, num_frames=3)
    raws = [raw_sample("a", 1, flow=False), None, raw_sample("c", 3, flow=False)]
    parts = assembled(raws, cfg, train=False)
    assert parts.good == [0, 2] and [item["status"] for item in parts.items] == ["ok", "missing", "ok"]
    batch = loader_batch(parts, parts.good)
    assert batch["segment_id"] == ["a", "c"] and batch["frames"].shape == (2, 3, 32, 32, 3)
    for row, raw in zip((0, 1), (raws[0], raws[2])):
        clip = make_clip(raw, cfg, train=False, seed=4, epoch=0)
        assert np.array_equal(batch["frames"][row].numpy(), clip["frames"])
        assert np.array_equal(batch["motion"][row].numpy(), clip["motion"])


def test_maps_decode_one_by_one_and_schema_2_maps_are_still_read():
    raw = raw_sample("m", 3, flow=False)
    full = decode_sample(raw)["motion"]
    assert np.array_equal(decode_sample(raw, positions=[4, 1])["motion"], full[[4, 1]])
    import cv2

    old = {k: v for k, v in raw.items() if k != "motion.zlib"}
    old["motion.png"] = cv2.imencode(".png", full.reshape(-1, full.shape[2]))[1].tobytes()
    assert np.array_equal(decode_sample(old, positions=[2])["motion"], full[[2]])
    broken = dict(raw, **{"motion.zlib": pack_images([b"not zlib"] * 6)})
    with pytest.raises(Exception, match="malformed"):
        decode_sample(broken, positions=[0])
