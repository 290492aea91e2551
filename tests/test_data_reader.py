"""The shard reader's tar iteration (standard library ``tarfile``, streamed)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fpar.data.reader import split_name, tar_samples
from shards.schema import encode_sample, sample_key
from shards.writer import ShardWriter

REPO = Path(__file__).resolve().parents[1]


def write_tar(path: Path, members: list[tuple[str, bytes | None]]) -> Path:
    """A tar of ``(name, data)`` members in this order; data None makes a folder entry."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def read(path: Path) -> list[dict]:
    with open(path, "rb") as fh:
        return list(tar_samples(str(path), fh))


def test_members_group_into_samples_by_key_in_tar_order(tmp_path):
    path = write_tar(tmp_path / "a.tar", [
        ("part", None),  # a folder entry: not a member of any sample
        ("part/P01_1_0.json", b"{}"), ("part/P01_1_0.frames.jpgs", b"F0"),
        ("part/P01_1_0.motion.png", b"M0"),
        ("README", b"no extension, skipped"),
        ("part/P01%2E1.json", b"{1}"), ("part/P01%2E1.frames.jpgs", b"F1"),
        ("P02.json", b"{2}"),
    ])
    samples = read(path)
    assert [s["__key__"] for s in samples] == ["part/P01_1_0", "part/P01%2E1", "P02"]
    assert samples[0] == {"__key__": "part/P01_1_0", "__url__": str(path), "json": b"{}",
                          "frames.jpgs": b"F0", "motion.png": b"M0"}
    assert samples[1]["frames.jpgs"] == b"F1" and "motion.png" not in samples[1]
    assert samples[2]["json"] == b"{2}"


def test_split_name_takes_the_first_dot_of_the_last_part():
    assert split_name("a.b/KEY.frames.jpgs") == ("a.b/KEY", "frames.jpgs")
    assert split_name("KEY.json") == ("KEY", "json")
    assert split_name("KEY") is None and split_name("dir/.hidden") is None


def test_a_sample_holding_an_extension_twice_is_an_error(tmp_path):
    path = write_tar(tmp_path / "dup.tar", [("k.json", b"1"), ("k.json", b"2")])
    with pytest.raises(ValueError, match="k.json appears twice in sample k"):
        read(path)


def test_cut_member_data_raises_and_garbage_ends_the_stream(tmp_path):
    path = write_tar(tmp_path / "t.tar", [("a.json", b"x" * 2000), ("b.json", b"y" * 2000)])
    data = path.read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[:512 + 1000])  # inside a.json's data
    with pytest.raises(tarfile.ReadError):
        read(tmp_path / "cut.tar")
    second = 512 + 2048  # b.json's header: a.json's header and its data padded to 512
    (tmp_path / "junk.tar").write_bytes(data[:second] + b"\x07" * 512 + data[second + 512:])
    assert [s["__key__"] for s in read(tmp_path / "junk.tar")] == ["a"]


def test_reader_equals_webdatasets_public_reader_on_a_shard(tmp_path):
    wds = pytest.importorskip("webdataset")
    records = []
    writer = ShardWriter(tmp_path, lambda: "toy-train-000000.tar", 1 << 40, records.append)
    rng = np.random.default_rng(0)
    for i in range(3):
        members = encode_sample({"segment_id": f"P01_1_{i}"},
                                (rng.random((2, 16, 16, 3)) * 255).astype(np.uint8),
                                np.zeros((2, 4, 4), np.uint8))
        writer.write(sample_key(f"P01_1_{i}"), members)
    writer.finish()
    path = tmp_path / "toy-train-000000.tar"
    ours = read(path)
    theirs = list(wds.WebDataset(str(path), shardshuffle=False))
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):
        assert a["__key__"] == b["__key__"]
        assert {k: v for k, v in a.items() if not k.startswith("__")} == \
            {k: v for k, v in b.items() if not k.startswith("__")}


def test_the_reader_does_not_need_webdataset():
    code = ("import sys, fpar.data.reader, fpar.data.stream; "
            "assert not [m for m in sys.modules if m.startswith('webdataset')]")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
