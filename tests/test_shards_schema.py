"""Shard schema: encode -> tar -> webdataset -> decode round trip, keys, manifest checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import webdataset as wds

from shards.files import atomic_write_json
from shards.schema import (
    FLOW_BOUND,
    FLOW_CHANNELS,
    MAP_STRIDE,
    META_EXT,
    SCHEMA_VERSION,
    SchemaError,
    decode_sample,
    encode_sample,
    flow_to_pixels,
    pack_images,
    quantise_flow,
    read_manifest,
    sample_key,
    segment_id_from_key,
    shard_paths,
    unpack_images,
)
from shards.writer import ShardWriter

M, H, W = 6, 48, 72


def _smooth_frames(rng: np.random.Generator) -> np.ndarray:
    # Smooth content so that JPEG error stays small and comparable.
    yy, xx = np.mgrid[0:H, 0:W]
    frames = np.empty((M, H, W, 3), np.uint8)
    for t in range(M):
        for c in range(3):
            phase = rng.uniform(0, 6)
            frames[t, :, :, c] = (127 + 100 * np.sin(xx / 9 + yy / 13 + phase + c)).astype(np.uint8)
    return frames


def _sample(rng, with_flow: bool, segment_id: str):
    frames = _smooth_frames(rng)
    motion = rng.integers(0, 256, size=(M, H // MAP_STRIDE, W // MAP_STRIDE), dtype=np.uint8)
    flow = None
    if with_flow:
        flow_px = np.zeros((M, FLOW_CHANNELS, H // 2, W // 2), np.float32)
        flow_px[:, :, 4:12, 6:20] = rng.uniform(-FLOW_BOUND, FLOW_BOUND, size=(M, FLOW_CHANNELS, 1, 1))
        flow = quantise_flow(flow_px)
    meta = {"dataset": "epic55", "segment_id": segment_id, "video_id": "P01_01", "participant": "P01",
            "verb_class": 3, "noun_class": 7, "class_id": -1, "fps": 59.94, "frame_indices": list(range(10, 10 + M))}
    return meta, frames, motion, flow


@pytest.mark.parametrize("with_flow", [False, True])
def test_round_trip_through_a_tar_read_by_webdataset(tmp_path, with_flow):
    rng = np.random.default_rng(0)
    ids = ["1234", "P01_101_0", "S1/close_chocolate/1", "OP01-R01-PastaSalad-1-2-F3-F4.x"]
    originals = {}
    records = []
    names = iter(f"epic55-train-{i:06d}.tar" for i in range(10))
    writer = ShardWriter(tmp_path, lambda: next(names), 1 << 30, records.append)
    for seg in ids:
        meta, frames, motion, flow = _sample(rng, with_flow, seg)
        originals[sample_key(seg)] = (meta, frames, motion, flow)
        writer.write(sample_key(seg), encode_sample(meta, frames, motion, flow))
    writer.finish()
    assert len(records) == 1 and records[0].samples == len(ids)

    seen = []
    for raw in wds.WebDataset(str(tmp_path / records[0].name), shardshuffle=False):
        out = decode_sample(raw)
        meta, frames, motion, flow = originals[out["__key__"]]
        seen.append(out["meta"]["segment_id"])
        for field, value in meta.items():
            assert out["meta"][field] == value
        assert out["frames"].shape == (M, H, W, 3) and out["frames"].dtype == np.uint8
        assert np.abs(out["frames"].astype(int) - frames).mean() < 3  # JPEG q90
        assert out["motion"].shape == (M, H // MAP_STRIDE, W // MAP_STRIDE)
        np.testing.assert_array_equal(out["motion"], motion)  # PNG: lossless
        assert out["meta"]["motion_size"] == [H // MAP_STRIDE, W // MAP_STRIDE]
        if with_flow:
            assert out["flow"].shape == (M, FLOW_CHANNELS, H // 2, W // 2)
            err = np.abs(flow_to_pixels(out["flow"]) - flow_to_pixels(flow))
            assert np.median(err) < 0.2 and err.mean() < 1.0
        else:
            assert "flow" not in out
        picked = decode_sample(raw, positions=[4, 0, 4])
        np.testing.assert_array_equal(picked["frames"][0], out["frames"][4])
        np.testing.assert_array_equal(picked["motion"][1], motion[0])
    assert sorted(seen) == sorted(ids)


def test_sample_keys_have_no_dots_or_slashes_and_are_distinct_and_invertible():
    ids = ["a.b", "a_2Eb", "a%2Eb", "a/b", "a b", "ä", "P01_101_0", "x.y.z", "a-b"]
    keys = [sample_key(i) for i in ids]
    assert len(set(keys)) == len(ids)
    for seg, key in zip(ids, keys):
        assert "." not in key and "/" not in key and " " not in key
        assert segment_id_from_key(key) == seg
    assert sample_key("P01_101_0") == "P01_101_0"


def test_quantised_flow_keeps_precision_and_clips_at_the_bound():
    values = np.array([-50.0, -FLOW_BOUND, -3.3, 0.0, 0.07, 7.5, FLOW_BOUND, 80.0], np.float32)
    back = flow_to_pixels(quantise_flow(values))
    step = 2 * FLOW_BOUND / 255
    inside = np.abs(values) <= FLOW_BOUND
    assert np.all(np.abs(back[inside] - values[inside]) <= step / 2 + 1e-5)
    assert back[0] == pytest.approx(-FLOW_BOUND) and back[-1] == pytest.approx(FLOW_BOUND)
    assert abs(back[3]) <= step / 2 + 1e-6


def test_damaged_samples_raise_naming_the_key():
    rng = np.random.default_rng(1)
    members = encode_sample(*_sample(rng, False, "9"))
    members["__key__"] = "9"
    broken = dict(members)
    del broken["motion.zlib"]
    with pytest.raises(SchemaError, match="sample 9"):
        decode_sample(broken)
    truncated = dict(members, **{"frames.jpgs": members["frames.jpgs"][:-10]})
    with pytest.raises(SchemaError, match="sample 9.*truncated"):
        decode_sample(truncated)
    with pytest.raises(SchemaError, match="positions"):
        decode_sample(members, positions=[M])
    assert unpack_images(pack_images([b"ab", b"", b"cde"])) == [b"ab", b"", b"cde"]
    meta = json.loads(members[META_EXT])
    assert meta["num_frames"] == M and meta["frame_size"] == [H, W]


def test_encode_rejects_wrong_shapes():
    rng = np.random.default_rng(2)
    meta, frames, motion, _ = _sample(rng, False, "1")
    with pytest.raises(SchemaError, match="motion must be"):
        encode_sample(meta, frames, motion[:, :-1])
    with pytest.raises(SchemaError, match="frames must be"):
        encode_sample(meta, frames[..., 0], motion)


def test_manifest_is_checked(tmp_path):
    with pytest.raises(SchemaError, match="no manifest"):
        read_manifest(tmp_path)
    manifest = {"schema_version": SCHEMA_VERSION, "params": {}, "failures": [], "num_samples": 2,
                "shards": [{"name": "x-000001.tar", "samples": 1, "bytes": 1, "sha256": ""},
                           {"name": "x-000000.tar", "samples": 1, "bytes": 1, "sha256": ""}]}
    atomic_write_json(tmp_path / "manifest.json", manifest)
    assert [p.name for p in shard_paths(tmp_path)] == ["x-000000.tar", "x-000001.tar"]
    atomic_write_json(tmp_path / "manifest.json", dict(manifest, schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(SchemaError, match="schema version"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(SchemaError, match="manifest.json"):
        read_manifest(tmp_path)


def test_pack_header_is_checked_against_its_bytes_and_the_record():
    import struct

    from shards.schema import pack_images, unpack_images

    pack = pack_images([b"ab", b"cde"])
    assert [bytes(v) for v in unpack_images(pack, 2)] == [b"ab", b"cde"]
    with pytest.raises(SchemaError, match="holds 2 images, the record says 3"):
        unpack_images(pack, 3)
    absurd = b"IPK1" + struct.pack("<I", 2**31) + pack[8:]
    with pytest.raises(SchemaError, match="announces 2147483648 images, more than its 21 bytes"):
        unpack_images(absurd)
    with pytest.raises(SchemaError, match="bad magic"):
        unpack_images(b"IPK")
