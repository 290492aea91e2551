"""Segment times to raw frames: the mapping, the release numbering, and the real annotations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shards.annotations import load_segments
from shards.annotations.table import AnnotationError
from shards.timing import FrameTimes, SegmentOutside, parse_timestamp, release_fps, release_frame

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "annotations"


def test_timestamps_parse_as_the_epic_files_write_them():
    assert parse_timestamp("00:00:04.37") == pytest.approx(4.37)
    assert parse_timestamp("01:02:03.5") == pytest.approx(3723.5)
    assert parse_timestamp("00:00:00.560") == pytest.approx(0.56)
    for bad in ("4.37", "00:61:00.00", "", "aa:bb:cc"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_span_is_the_frames_showing_the_segment():
    times = FrameTimes.uniform(120, 30.0)  # 4 s
    span = times.span(1.0, 2.0)
    assert (span.first, span.last, span.clamped) == (30, 59, False)
    assert times.span(1.01, 1.02).first == times.span(1.01, 1.02).last == 30  # shorter than a frame
    assert times.span(3.9, 4.0).clamped is False and times.span(3.9, 4.0).last == 119  # stops at the end
    clamped = times.span(3.9, 4.2)
    assert clamped.clamped and clamped.last == 119
    with pytest.raises(SegmentOutside, match="starts after"):
        times.span(4.0, 5.0)
    with pytest.raises(SegmentOutside):
        times.span(2.0, 1.0)


def test_frame_times_start_at_the_first_frame_and_must_increase():
    times = FrameTimes(np.array([0.5, 0.6, 0.7]), 0.8)
    assert times.starts.tolist() == pytest.approx([0.0, 0.1, 0.2]) and times.end == pytest.approx(0.3)
    assert times.fps == pytest.approx(10.0)
    with pytest.raises(ValueError, match="increase"):
        FrameTimes(np.array([0.0, 0.2, 0.1]), 0.3)


def test_release_numbering():
    assert release_fps("epic55", 29.97) == release_fps("epic55", 90.0) == 60.0
    assert release_fps("epic100", 50.0) == 50.0 and release_fps("epic100", 59.94) == 60.0
    assert release_fps("egtea", 24.0) == 24.0
    # As the real files: 00:00:00.14 -> 8, 00:00:03.37 -> 202, 00:00:00.00 -> 1.
    assert [release_frame(t, 60.0) for t in (0.14, 3.37, 0.0)] == [8, 202, 1]


@pytest.mark.skipif(not SHARED.is_dir(), reason="real annotation files not present")
@pytest.mark.parametrize("fmt, folder, split", [("epic55", "epic-kitchens-55", "train"),
                                                ("epic100", "epic-kitchens-100", "validation")])
def test_real_annotations_number_frames_at_60_fps_whatever_the_videos_rate(fmt, folder, split):
    table = load_segments(fmt, SHARED / folder, split)
    later = table[table.start_time > 5]
    ratio = later.start_frame / later.start_time
    rates = later.fps.round(2)
    assert {29.97, 47.95, 59.94} <= set(rates)
    for rate in sorted(set(rates)):
        assert ratio[rates == rate].between(59.8, 60.01).all(), rate
    # The raw 29.97 fps files hold half as many frames: the frame numbers cannot index them.
    slow = later[rates == 29.97]
    assert (slow.stop_frame > slow.stop_time * 29.97 * 1.9).all()


@pytest.mark.skipif(not SHARED.is_dir(), reason="real annotation files not present")
def test_real_egtea_times_come_from_the_clip_names():
    table = load_segments("egtea", SHARED / "egtea-gaze-plus", "train_split1")
    first = table.iloc[0]  # P21-R04-ContinentalBreakfast-291175-294945-F006979-F007088
    assert (first.start_time, first.stop_time) == pytest.approx((291.175, 294.945))
    assert (first.start_frame, first.stop_frame) == (6979, 7088)
    assert ((table.start_frame / table.start_time).between(23.5, 24.5)).mean() > 0.99


def test_a_bad_timestamp_names_file_and_line(tmp_path):
    (tmp_path / "EPIC_test_s1_timestamps.csv").write_text(
        "uid,participant_id,video_id,start_timestamp,stop_timestamp,start_frame,stop_frame\n"
        "1,P01,P01_11,00:00:01.00,00:00:02.00,61,121\n2,P01,P01_11,1.5,00:00:03.00,91,181\n"
    )
    with pytest.raises(AnnotationError, match=r"EPIC_test_s1_timestamps.csv, line 3: column start_timestamp"):
        load_segments("epic55", tmp_path, "s1")
