"""Decoding: exact frames by index (H.264 with B-frames), resizing, frame folders, errors."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from shards.decode import DecodeError, FrameFolder, VideoFile, index_videos, sample_frames, stored_size
from shards.toyvideo import make_toy_video


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_video(tmp_path_factory.mktemp("video") / "P01_01.MP4", num_frames=40, seed=5)


def _closest_frame(decoded: np.ndarray, rendered: np.ndarray) -> int:
    errors = np.abs(rendered.astype(np.int16) - decoded.astype(np.int16)).mean(axis=(1, 2, 3))
    return int(np.argmin(errors))


def test_reads_return_exactly_the_requested_frames(toy):
    video = VideoFile(toy.path, short_side=96)
    assert video.num_frames == 40 and (video.height, video.width) == (96, 128)
    # Unsorted, repeated, across key frames (GOP 12) and B-frames.
    indices = [int(i) for i in np.random.default_rng(0).integers(0, 40, size=12)] + [39, 0, 13, 13]
    batch = video.read(indices)
    assert batch.shape == (len(indices), 96, 128, 3)
    assert [_closest_frame(f, toy.frames) for f in batch] == indices


def _idle_cpu_seconds(seconds: float) -> float:
    import resource
    import time

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    start = cpu()
    time.sleep(seconds)
    return cpu() - start


def test_an_open_video_costs_no_cpu_between_reads(tmp_path):
    """No decoding ahead after a read (decord's decoder thread did, until the next seek): a
    worker that goes on to compute motion maps must not pay for frames nobody asked for."""
    from shards.toyvideo import make_epic_like_video

    path = make_epic_like_video(tmp_path / "P01_01.MP4", 8.0, 59.94, (640, 360), seed=1)
    video = VideoFile(path, short_side=96)
    first = video.read([5, 17, 30])
    # Decoding ahead the remaining ~450 frames keeps a core busy for the whole half second.
    assert _idle_cpu_seconds(0.5) < 0.1
    assert np.array_equal(video.read([5, 17, 30]), first)
    assert np.array_equal(video.read([30, 17]), first[[2, 1]])


def test_reads_are_exact_at_sync_samples_that_are_not_key_frames(tmp_path):
    """A scene cut just after a key frame makes x264 write an I-frame that the MP4 lists as a
    sync sample but that is no key frame to the decoder (EPIC-like synthetic kitchens have
    them). decord's ``get_batch`` returned frames 1-2 positions early around them, whatever
    came before; every read here must return the frames asked for, in any order."""
    import av

    from shards.synth.video import write_mp4
    from shards.toyvideo import render_toy_frames

    scenes = [render_toy_frames(150, 128, 96, seed=s)[0] for s in range(6)]
    rendered = np.stack([scenes[(i + 28) // 30][i] for i in range(150)])  # cuts at 2, 32, 62, ...
    path = tmp_path / "P01_01.MP4"
    write_mp4(path, rendered, 30.0, 128, 96, preset="superfast")
    with av.open(str(path)) as container:  # no B-frames: packets and frames in the same order
        sync, keys = [], []
        for i, packet in enumerate(container.demux(container.streams.video[0])):
            if packet.is_keyframe:
                sync.append(i)
            if any(frame.key_frame for frame in packet.decode()):
                keys.append(i)
    assert set(sync) - set(keys)  # the case at hand: sync samples the decoder does not key on

    video = VideoFile(path, short_side=96)
    rng = np.random.default_rng(3)
    batches = [[60, 62, 63, 64], [92, 93, 94], [0, 1, 2, 3]]
    batches += [sorted({int(k + d) for k in rng.integers(3, 140, 5) for d in (-3, -1, 0, 1, 3)}) for _ in range(8)]
    for indices in batches:
        assert [_closest_frame(f, rendered) for f in video.read(indices)] == indices, indices


def test_frames_are_resized_to_the_short_side_at_decode(toy):
    video = VideoFile(toy.path, short_side=48)
    batch = video.read([7, 30])
    assert batch.shape == (2, 48, 64, 3)
    small = np.stack([cv2.resize(f, (64, 48), interpolation=cv2.INTER_AREA) for f in toy.frames])
    assert [_closest_frame(f, small) for f in batch] == [7, 30]
    assert stored_size(1080, 1920, 256) == (256, 455)
    with pytest.raises(DecodeError, match="outside"):
        video.read([40])


def test_broken_files_raise_decode_errors_naming_the_file(toy, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(4000))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(toy.path.read_bytes()[: toy.path.stat().st_size // 2])
    for path in (garbage, truncated, tmp_path / "missing.mp4"):
        with pytest.raises(DecodeError, match=path.name):
            VideoFile(path, short_side=96)


def test_frame_folders_read_in_name_order_and_resize(toy, tmp_path):
    folder = tmp_path / "S1" / "close_jam" / "1"
    folder.mkdir(parents=True)
    for t in range(10):
        cv2.imwrite(str(folder / f"{t + 1:05d}.png"), cv2.cvtColor(toy.frames[t], cv2.COLOR_RGB2BGR))
    frames = FrameFolder(folder, short_side=48, fps=24)
    assert frames.num_frames == 10 and frames.fps == 24
    batch = frames.read([9, 2])
    assert batch.shape == (2, 48, 64, 3)
    small = np.stack([cv2.resize(f, (64, 48), interpolation=cv2.INTER_AREA) for f in toy.frames[:10]])
    assert [_closest_frame(f, small) for f in batch] == [9, 2]
    with pytest.raises(DecodeError, match="no frame images"):
        FrameFolder(tmp_path / "S1", short_side=48)


def test_uniform_sampling_covers_the_segment():
    assert sample_frames(11, 20, 5) == [12, 14, 16, 18, 20]
    frames = sample_frames(100, 399, 32)
    assert frames == sorted(frames) and frames[0] >= 100 and frames[-1] <= 399 and len(set(frames)) == 32
    assert sample_frames(5, 7, 6) == [5, 5, 6, 6, 7, 7]  # short segments repeat frames
    with pytest.raises(ValueError, match="empty segment"):
        sample_frames(9, 8, 4)


def test_video_index_finds_both_extensions_and_keeps_duplicates(tmp_path):
    for rel in ("P01/P01_01.MP4", "P01/sub/P01_02.mp4", "P02/P02_01.MP4", "other/P02_01.mp4", "P03/notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found = index_videos(tmp_path)
    assert sorted(found) == ["P01_01", "P01_02", "P02_01"]
    assert found["P01_02"] == [tmp_path / "P01/sub/P01_02.mp4"]
    assert len(found["P02_01"]) == 2


@pytest.mark.parametrize("short_side", [72, 64])
def test_sizes_decord_could_not_scale_to_come_out_whole(toy, short_side):
    # decord2 3.4 returned 4-channel frames when asked for 96x72 (and 96x64).
    video = VideoFile(toy.path, short_side=short_side)
    width = round(128 * short_side / 96)
    batch = video.read([3, 21, 3])
    assert batch.shape == (3, short_side, width, 3)
    small = np.stack([cv2.resize(f, (width, short_side), interpolation=cv2.INTER_AREA)
                      for f in toy.frames])
    assert [_closest_frame(f, small) for f in batch] == [3, 21, 3]


def test_video_index_visits_each_real_folder_once(tmp_path):
    import threading

    for rel in ("P01/P01_01.MP4", "P02/P02_01.MP4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "P01" / "up").symlink_to(tmp_path)  # a loop
    (tmp_path / "mirror").symlink_to(tmp_path / "P02")  # the same folder twice
    found = index_videos(tmp_path)
    assert found == {"P01_01": [tmp_path / "P01/P01_01.MP4"], "P02_01": [tmp_path / "P02/P02_01.MP4"]}
    # Two loops made the walk exponential: it never finished.
    (tmp_path / "P02" / "back").symlink_to(tmp_path)
    result = {}
    walker = threading.Thread(target=lambda: result.update(index_videos(tmp_path)), daemon=True)
    walker.start()
    walker.join(timeout=30)
    assert not walker.is_alive() and result == found
