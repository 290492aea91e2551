"""Inputs of ``fpar bench shards``: the segment tables and the videos they point to.

``epic``: two EPIC-like camera files (:func:`shards.toyvideo.make_epic_like_video`), one at
59.94 fps (EPIC-55 and most of EPIC-100) and one at 50 fps (EPIC-100's 2020 videos), each
with segments whose durations follow EPIC-55's (median ~2 s, seeded) and that sometimes
overlap, as narrated actions do. ``toy``: the 720p toy video with 1.5 s segments that
overlap by half.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

EPIC_VIDEOS = (("P01_01", 59.94), ("P22_01", 50.0))  # (video id, frame rate)


def _row(segment: int, video_id: str, start: float, stop: float, fps: float) -> dict:
    # EPIC-55 numbers frames at 60 fps: start_frame and stop_frame are only carried along.
    return {"segment_id": str(segment), "video_id": video_id, "participant": video_id.split("_")[0],
            "start_frame": int(start * 60) + 1, "stop_frame": int(stop * 60) + 1, "start_time": start,
            "stop_time": stop, "fps": fps, "verb_class": 0, "noun_class": 0, "class_id": -1,
            "split": "bench", "frame_dir": None}


def epic_segments(args: argparse.Namespace, folder: Path):
    """EPIC-like videos in ``folder`` (reused when already there) and their segment table."""
    import numpy as np
    import pandas as pd

    from shards.toyvideo import make_epic_like_video

    width, height = parse_size(args.size or "1920x1080")
    rng = np.random.default_rng(args.seed)
    rows, videos = [], []
    counts = [(args.segments + 1) // 2, args.segments // 2]
    for (video_id, fps), count in zip(EPIC_VIDEOS, counts):
        if count == 0:
            continue
        durations = np.clip(rng.lognormal(np.log(2.0), 0.7, count), 0.5, 6.0)
        gaps = rng.uniform(-0.6, 1.0, count)
        start = 0.5
        for duration, gap in zip(durations, gaps):
            rows.append(_row(len(rows), video_id, round(start, 3), round(start + duration, 3), fps))
            start = max(start + 0.25, start + duration + gap)
        seconds = max(r["stop_time"] for r in rows if r["video_id"] == video_id) + 0.5
        name = hashlib.sha256(f"{video_id} {width}x{height} {fps} {seconds:.3f} {args.seed}".encode()).hexdigest()[:12]
        path = folder / f"{video_id}-{name}" / f"{video_id}.MP4"
        if not path.is_file():
            make_epic_like_video(path.with_name(".partial.MP4"), seconds, fps, (width, height), args.seed).rename(path)
        videos.append({"video_id": video_id, "fps": fps, "size": [width, height], "seconds": round(float(seconds), 2),
                       "segments": count, "mbps": round(float(path.stat().st_size * 8 / seconds / 1e6), 2),
                       "path": str(path)})
    return pd.DataFrame(rows), videos


def toy_segments(args: argparse.Namespace, folder: Path):
    """The toy video (rendered in ``folder``) and its segment table."""
    import pandas as pd

    from shards.toyvideo import make_toy_video

    width, height = parse_size(args.size or "1280x720")
    length = 90
    num_frames = length * args.segments // 2 + length
    scale = width / 128
    path = folder / "toy" / "toy.mp4"
    make_toy_video(path, num_frames, width, height, seed=args.seed, fps=args.fps,
                   pan=(0.75 * scale, 0.25 * scale), speed=(-1.25 * scale, 0.5 * scale))
    starts = [i * length // 2 for i in range(args.segments)]
    rows = [_row(i, "toy", s / args.fps, (s + length) / args.fps, args.fps) for i, s in enumerate(starts)]
    videos = [{"video_id": "toy", "fps": args.fps, "size": [width, height], "seconds": round(num_frames / args.fps, 2),
               "segments": args.segments, "mbps": round(path.stat().st_size * 8 * args.fps / num_frames / 1e6, 2),
               "path": str(path)}]
    return pd.DataFrame(rows), videos


def parse_size(text: str) -> tuple[int, int]:
    """``"1920x1080"`` -> (1920, 1080); even sides (H.264 with 4:2:0 colour needs them)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must be WxH (e.g. 1920x1080), got {text!r}") from None
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(f"--size needs even sides >= 16, got {text!r}")
    return width, height
