"""The shard schema: what one WebDataset sample holds and how it is encoded.

This is the one module both the shard writer and the training reader import. A shard is a
plain tar file; each annotated segment is one sample made of these members (``KEY`` is
:func:`sample_key` of the segment id):

``KEY.json``
    The record: dataset, segment_id, video_id, participant, verb_class, noun_class,
    class_id (-1 = no label), start_frame and stop_frame as the annotations wrote them,
    start_time and stop_time (seconds: the segment's time, which chose the frames), fps (the
    raw file's real rate), native_frames (the 0-based indices of the raw file's frames kept),
    frame_times (their times, s), clamped (the stop lay past the last decodable frame),
    frame_size [H, W], motion_size [h, w] and, with flow, flow_size [H', W'] and flow_bound.
``KEY.frames.jpgs``
    The M kept frames as one *image pack* (below) of RGB JPEGs (quality ~90), resized to the
    build's short side.
``KEY.motion.zlib``
    The M motion maps as one pack (the image pack's layout) of zlib-compressed raw uint8
    maps (h, w, row-major): each value is the fraction (0..255) of the map cell whose motion
    the camera does not explain. h, w are the frame size divided by :data:`MAP_STRIDE`
    (floor). One map decompresses without the others; on the maps of synthetic kitchens
    this is smaller than one PNG of all maps and than a PNG per map, and decodes the 7 maps
    of a clip in a fraction of the time (``fpar bench loader`` has the figures). Schema 2
    stacked the maps in one PNG, ``KEY.motion.png``; it is still read.
``KEY.flow.jpgs`` (only when built with flow)
    For each kept frame, one grey JPEG of (10*H', W'): the 5 consecutive x/y warp-flow pairs
    around the frame stacked vertically in the order x0, y0, x1, y1, ... (Ego-RNN flow stream
    input). Values are pixels of the stored frames, clipped to +-:data:`FLOW_BOUND` and mapped
    linearly to 0..255 (128 ~ no motion); see :func:`flow_to_pixels`.

Why one pack per sample rather than one tar member per frame: a sample then has 3-4 members
instead of ~70 (or ~400 with flow), which is what the tar iteration of a reader pays for per
sample in Python, and the reader still decodes only the N <= M frames it picks
(:func:`decode_sample` with ``positions``), since the pack's header gives each frame's offset.
The training reader decodes through :func:`decode_sample` too, so there is one decoder.

Image pack: ``b"IPK1"``, uint32 little-endian count n, n uint32 byte lengths, then the n
encoded images back to back.
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from shards.files import read_json

SCHEMA_VERSION = 4
# Versions this code reads: they differ in how the motion maps are stored and in how exactly
# the frames were decoded, not in their layout.
READABLE_VERSIONS = (2, 3, 4)
# What each version changed, for the message that refuses a folder of another version.
SCHEMA_CHANGES = {
    2: "frames are taken from each segment's time through the raw file's own timestamps; "
    "v1 indexed raw videos with the annotations' frame numbers, wrong on videos not at ~60 fps",
    3: "motion maps compressed one by one, so a clip decodes only the maps of its frames",
    4: "frames found by their presentation timestamps (PyAV); v3's decord reads returned frames "
    "one or two positions early for a few percent of segments",
}
DEFAULT_FRAMES = 32
DEFAULT_SHORT_SIDE = 256
MAP_STRIDE = 4
JPEG_QUALITY = 90
FLOW_BOUND = 20.0
FLOW_PAIRS = 5
FLOW_CHANNELS = 2 * FLOW_PAIRS
MANIFEST_NAME = "manifest.json"

META_EXT = "json"
FRAMES_EXT = "frames.jpgs"
MOTION_EXT = "motion.zlib"
STACKED_MOTION_EXT = "motion.png"  # schema 2: all maps in one PNG
FLOW_EXT = "flow.jpgs"

_PACK_MAGIC = b"IPK1"
# Bounds on what a record may announce when the manifest gives none: far beyond any real
# sample, small enough that a buffer of that size is no threat to a loader worker.
MAX_FRAMES = 4096
MAX_SIDE = 8192
MAX_ASPECT = 8
SHARD_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*-\d{6}\.tar")
_SAFE_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class SchemaError(ValueError):
    """A sample or manifest that does not follow this schema."""


@dataclass(frozen=True)
class SampleBounds:
    """What a sample of one shard folder may hold, from its manifest's build parameters.

    Attributes:
        frames: Most kept frames per sample (the build's ``frames``).
        short_side: The stored frames' shorter side (the build's ``short_side``), or None.
    """

    frames: int = MAX_FRAMES
    short_side: int | None = None


def bounds_of(params: dict[str, Any]) -> SampleBounds:
    """The sample bounds a manifest's ``params`` give (generic ones for missing keys)."""
    frames, side = params.get("frames"), params.get("short_side")
    return SampleBounds(frames if isinstance(frames, int) and 0 < frames <= MAX_FRAMES else MAX_FRAMES,
                        side if isinstance(side, int) and 0 < side <= MAX_SIDE else None)


def _size_pair(meta: dict, field: str, limit: int) -> tuple[int, int]:
    value = meta.get(field)
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise SchemaError(f"record field {field} must be two integers, got {value!r:.60}")
    if not all(1 <= v <= limit for v in value):
        raise SchemaError(f"record field {field} {value} outside 1..{limit}")
    return value[0], value[1]


def check_record(meta: dict, bounds: SampleBounds | None = None) -> int:
    """Checks the counts and sizes a record announces before anything is allocated for them.

    Returns:
        The record's frame count.

    Raises:
        SchemaError: A count or size that breaks the schema or the folder's bounds.
    """
    bounds = bounds or SampleBounds()
    count = meta.get("num_frames")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= bounds.frames:
        raise SchemaError(f"record num_frames {count!r:.30} outside 1..{bounds.frames}")
    limit = MAX_SIDE if bounds.short_side is None else MAX_ASPECT * bounds.short_side
    height, width = _size_pair(meta, "frame_size", limit)
    if bounds.short_side is not None and min(height, width) != bounds.short_side:
        raise SchemaError(f"record frame_size {[height, width]} does not have the build's "
                          f"short side {bounds.short_side}")
    if _size_pair(meta, "motion_size", limit) != (height // MAP_STRIDE, width // MAP_STRIDE):
        raise SchemaError(f"record motion_size {meta['motion_size']} is not frame_size "
                          f"{[height, width]} // {MAP_STRIDE}")
    if "flow_size" in meta:
        _size_pair(meta, "flow_size", limit)
    return count


def sample_key(segment_id: str) -> str:
    """Returns the WebDataset key of a segment: no dots (WebDataset splits at the first dot)
    and no slashes; every other byte is written ``%XX``, so distinct ids give distinct keys.
    """
    out = []
    for char in str(segment_id):
        if char in _SAFE_KEY_CHARS:
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8"))
    if not out:
        raise SchemaError("empty segment id")
    return "".join(out)


def segment_id_from_key(key: str) -> str:
    """Inverse of :func:`sample_key`."""
    from urllib.parse import unquote

    return unquote(key)


def pack_images(blobs: Sequence[bytes]) -> bytes:
    """Concatenates encoded images with a header of their lengths (the image pack)."""
    header = _PACK_MAGIC + struct.pack(f"<I{len(blobs)}I", len(blobs), *(len(b) for b in blobs))
    return header + b"".join(blobs)


def unpack_images(pack: bytes, expected: int | None = None) -> list[memoryview]:
    """Splits an image pack into its encoded images (views, no copy).

    Args:
        pack: The pack's bytes.
        expected: The count the sample's record announces; the header must agree.

    Raises:
        SchemaError: A bad magic, or a header whose count or lengths the bytes cannot hold.
    """
    view = memoryview(pack)
    if len(view) < 8 or bytes(view[:4]) != _PACK_MAGIC:
        raise SchemaError("not an image pack (bad magic)")
    (count,) = struct.unpack_from("<I", view, 4)
    if expected is not None and count != expected:
        raise SchemaError(f"image pack header holds {count} images, the record says {expected}")
    if 8 + 4 * count > len(view):
        raise SchemaError(f"image pack header announces {count} images, more than its "
                          f"{len(view)} bytes can hold")
    lengths = struct.unpack_from(f"<{count}I", view, 8)
    offset = 8 + 4 * count
    if offset + sum(lengths) != len(view):
        raise SchemaError(f"image pack truncated: header says {offset + sum(lengths)} bytes, has {len(view)}")
    out = []
    for length in lengths:
        out.append(view[offset : offset + length])
        offset += length
    return out


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG-encodes an RGB (H, W, 3) or grey (H, W) uint8 image."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise SchemaError("JPEG encoding failed")
    return buf.tobytes()


# libjpeg writes RGB as cheaply as BGR: asking for it spares a conversion pass.
_COLOR_FLAGS = {1: cv2.IMREAD_COLOR_RGB,
                **{r: (flag & ~cv2.IMREAD_COLOR) | cv2.IMREAD_COLOR_RGB for r, flag in (
                    (2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4),
                    (8, cv2.IMREAD_REDUCED_COLOR_8))}}


_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def image_size(blob: bytes | memoryview) -> tuple[int, int] | None:
    """(height, width) a JPEG's frame header or a PNG's IHDR announces; None without one."""
    data = memoryview(blob)
    if bytes(data[:8]) == _PNG_MAGIC and len(data) >= 24:
        width, height = struct.unpack_from(">II", data, 16)
        return height, width
    if bytes(data[:2]) != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return height, width
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return None


def _decode_image(blob: bytes | memoryview, color: bool, reduction: int = 1,
                  size: tuple[int, int] | None = None) -> np.ndarray:
    """Decodes one image; with ``size``, only if its header announces that (height, width),
    so a header claiming a huge image costs nothing."""
    if size is not None:
        announced = image_size(blob)
        if announced != tuple(size):
            said = "no size" if announced is None else f"{announced[0]}x{announced[1]}"
            raise SchemaError(f"image header announces {said}, the record {size[0]}x{size[1]}")
    data = np.frombuffer(blob, np.uint8)
    image = cv2.imdecode(data, _COLOR_FLAGS[reduction] if color else cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise SchemaError("image could not be decoded")
    return image


def quantise_flow(flow_px: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Maps flow in pixels to uint8: [-bound, +bound] -> [0, 255], clipped."""
    scaled = (np.asarray(flow_px, np.float32) + bound) * (255.0 / (2 * bound))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def flow_to_pixels(flow_u8: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Inverse of :func:`quantise_flow` (float32 pixels of the stored frames)."""
    return flow_u8.astype(np.float32) * (2 * bound / 255.0) - bound


def encode_sample(
    meta: dict[str, Any],
    frames: np.ndarray,
    motion: np.ndarray,
    flow: np.ndarray | None = None,
    jpeg_quality: int = JPEG_QUALITY,
) -> dict[str, bytes]:
    """Encodes one segment into the tar members of a sample (without the key).

    Args:
        meta: The record; must hold ``segment_id``; frame/map sizes are filled in here.
        frames: uint8 RGB (M, H, W, 3).
        motion: uint8 moving fractions (M, H // MAP_STRIDE, W // MAP_STRIDE).
        flow: Optional quantised warp flow uint8 (M, FLOW_CHANNELS, H', W').
        jpeg_quality: JPEG quality of frames and flow.

    Returns:
        ``{extension: bytes}`` for :data:`META_EXT`, :data:`FRAMES_EXT`, :data:`MOTION_EXT`
        and, with flow, :data:`FLOW_EXT`.
    """
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise SchemaError(f"frames must be uint8 (M, H, W, 3), got {frames.dtype} {frames.shape}")
    count, height, width = frames.shape[:3]
    map_size = (height // MAP_STRIDE, width // MAP_STRIDE)
    if motion.dtype != np.uint8 or motion.shape != (count, *map_size):
        raise SchemaError(f"motion must be uint8 {(count, *map_size)}, got {motion.dtype} {motion.shape}")
    if "segment_id" not in meta:
        raise SchemaError("meta has no segment_id")
    record = dict(meta, frame_size=[height, width], motion_size=list(map_size), num_frames=count)
    out = {
        FRAMES_EXT: pack_images([encode_jpeg(f, jpeg_quality) for f in frames]),
        MOTION_EXT: pack_images([zlib.compress(np.ascontiguousarray(m).tobytes(), 6) for m in motion]),
    }
    if flow is not None:
        if flow.dtype != np.uint8 or flow.ndim != 4 or flow.shape[:2] != (count, FLOW_CHANNELS):
            raise SchemaError(f"flow must be uint8 ({count}, {FLOW_CHANNELS}, H', W'), got {flow.dtype} {flow.shape}")
        record.update(flow_size=list(flow.shape[2:]), flow_bound=FLOW_BOUND)
        tiles = [f.reshape(FLOW_CHANNELS * flow.shape[2], flow.shape[3]) for f in flow]
        out[FLOW_EXT] = pack_images([encode_jpeg(t, jpeg_quality) for t in tiles])
    out[META_EXT] = json.dumps(record, sort_keys=True).encode("utf-8")
    return out


def decode_sample(raw: dict[str, Any], positions: Sequence[int] | None = None, *,
                  reduction: int = 1, flow: bool = True, stacked: bool = True,
                  bounds: SampleBounds | None = None) -> dict[str, Any]:
    """Decodes a sample as read raw from a shard (members by extension, no decoding yet).

    Args:
        raw: Members by extension (bytes); ``json`` may also be an already parsed dict.
        positions: Optional positions (0..M-1) of the kept frames to decode, repeats
            allowed; the others are not decoded. Default: all M.
        reduction: Decode the frames at 1/1, 1/2, 1/4 or 1/8 of their size (libjpeg's DCT
            scaling, cheaper than decoding in full and resizing); maps and flow are
            always decoded in full.
        flow: Decode the flow member when the sample has one.
        stacked: Frames as one array; False gives an iterator that decodes the (H, W, 3)
            frames one at a time as it is read, for a caller that crops each at once (no
            copy of full frames, and one frame's pixels in cache at a time); its errors
            are SchemaErrors naming the sample.
        bounds: The folder's bounds (:func:`bounds_of` its manifest's params); the record's
            counts and sizes are checked against them before anything is allocated.

    Returns:
        ``{"meta": dict, "frames": uint8 (N, H/r, W/r, 3) RGB, "motion": uint8 (N, h, w),
        "flow": uint8 (N, 10, H', W') when the sample has flow and ``flow`` is set}``; also
        ``__key__`` when ``raw`` has one.

    Raises:
        SchemaError: naming the sample key when a member is missing or malformed.
    """
    key = raw.get("__key__", "?")
    try:
        meta = raw[META_EXT]
        meta = meta if isinstance(meta, dict) else json.loads(bytes(meta).decode("utf-8"))
        count = check_record(meta, bounds)
        picks = list(range(count)) if positions is None else [int(p) for p in positions]
        if any(p < 0 or p >= count for p in picks):
            raise SchemaError(f"positions {picks} outside 0..{count - 1}")
        if reduction not in _COLOR_FLAGS:
            raise SchemaError(f"reduction {reduction} is not one of 1, 2, 4, 8")
        packed = unpack_images(raw[FRAMES_EXT], count)
        size = tuple(meta["frame_size"])
        if stacked:  # errors get the sample's name below
            frames = np.stack(list(_frames_in_order(packed, picks, reduction, None, size)))
        else:
            frames = _frames_in_order(packed, picks, reduction, key, size)
        out = {"meta": meta, "frames": frames,
               "motion": _decode_maps(raw, meta, count, picks)}
        if flow and FLOW_EXT in raw:
            flow_h, flow_w = meta["flow_size"]
            tiles = unpack_images(raw[FLOW_EXT], count)
            tile = (FLOW_CHANNELS * flow_h, flow_w)
            stacks = {p: _decode_image(tiles[p], False, size=tile).reshape(FLOW_CHANNELS, flow_h, flow_w)
                      for p in set(picks)}
            out["flow"] = np.stack([stacks[p] for p in picks])
    except SchemaError as err:
        raise SchemaError(f"sample {key}: {err}") from err
    except (KeyError, ValueError, TypeError, IndexError, cv2.error, zlib.error, struct.error) as err:
        raise SchemaError(f"sample {key}: malformed ({type(err).__name__}: {err})") from err
    if "__key__" in raw:
        out["__key__"] = raw["__key__"]
    return out


def _frames_in_order(packed: list[memoryview], picks: list[int], reduction: int,
                     key: Any, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """The picked frames of the record's ``size``, decoded when asked for (a pick repeating
    the previous one is the same array); errors name the sample ``key`` unless it is None."""
    last_pick, last = None, None
    for pick in picks:
        if pick != last_pick:
            try:
                last = _decode_image(packed[pick], True, reduction, size)
            except (SchemaError, cv2.error) as err:
                where = f"frame {pick}: {err}"
                raise SchemaError(where if key is None else f"sample {key}: {where}") from err
            last_pick = pick
        yield last


def _decode_maps(raw: dict[str, Any], meta: dict, count: int, picks: list[int]) -> np.ndarray:
    """The picked motion maps (N, h, w), decoding only those of a pack."""
    map_h, map_w = meta["motion_size"]
    if MOTION_EXT not in raw and STACKED_MOTION_EXT in raw:
        stacked = _decode_image(raw[STACKED_MOTION_EXT], False, size=(count * map_h, map_w))
        return stacked.reshape(count, map_h, map_w)[picks]
    packed = unpack_images(raw[MOTION_EXT], count)
    maps = np.empty((len(picks), map_h, map_w), dtype=np.uint8)
    last = None
    for i, p in enumerate(picks):
        if p == last:  # repeated picks (fewer stored maps than N) are adjacent
            maps[i] = maps[i - 1]
            continue
        data = _inflate(packed[p], map_h * map_w, p)
        if len(data) != map_h * map_w:
            raise SchemaError(f"motion map {p} holds {len(data)} bytes, not {map_h}x{map_w}")
        maps[i] = np.frombuffer(data, np.uint8).reshape(map_h, map_w)
        last = p
    return maps


def _inflate(blob: memoryview, size: int, position: int) -> bytes:
    """Decompresses one map, stopping past the ``size`` bytes its record promises."""
    inflater = zlib.decompressobj()
    data = inflater.decompress(blob, size + 1)
    if len(data) > size or inflater.unconsumed_tail:
        raise SchemaError(f"motion map {position} inflates beyond the {size} bytes of its record")
    return data


def changes_since(version: Any) -> str:
    """What the schema versions after ``version`` changed, for a message refusing it."""
    old = version if isinstance(version, int) else 0
    return "; ".join(f"v{v}: {text}" for v, text in sorted(SCHEMA_CHANGES.items()) if v > old) or "another layout"


def shard_name(dataset: str, split: str, number: int) -> str:
    """Shard file name ``<dataset>-<split>-%06d.tar``."""
    return f"{dataset}-{split}-{number:06d}.tar"


def read_manifest(shard_dir: str | Path) -> dict[str, Any]:
    """Reads and checks ``manifest.json`` of a shard folder.

    Returns:
        The manifest: ``schema_version``, ``dataset``, ``split``, ``params`` (build
        parameters), ``shards`` [{name, samples, bytes, sha256}], ``num_samples``,
        ``failures`` [{segment_id, video_id, reason}], ``num_segments``.

    Raises:
        SchemaError: when the manifest is missing (build not finished), unreadable or of
            another schema version.
    """
    path = Path(shard_dir) / MANIFEST_NAME
    if not path.is_file():
        raise SchemaError(f"{path}: no manifest (the build has not finished; re-run it to resume)")
    try:
        manifest = read_json(path)
    except ValueError as err:
        raise SchemaError(str(err)) from err
    version = manifest.get("schema_version")
    if version not in READABLE_VERSIONS:
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise SchemaError(
                f"{path}: shard schema version {version} is newer than this fpar reads ({SCHEMA_VERSION}); "
                "upgrade fpar, or rebuild the shards with this one (fpar shards build ... --restart)"
            )
        raise SchemaError(
            f"{path}: shard schema version {version}, this code reads {SCHEMA_VERSION} "
            f"({changes_since(version)}); rebuild the shards (fpar shards build ... --restart)"
        )
    for key in ("shards", "num_samples", "failures", "params"):
        if key not in manifest:
            raise SchemaError(f"{path}: missing key '{key}'")
    if not isinstance(manifest["shards"], list):
        raise SchemaError(f"{path}: 'shards' must be a list")
    for entry in manifest["shards"]:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not SHARD_PATTERN.fullmatch(name):
            raise SchemaError(f"{path}: shard name {name!r:.120} is not a plain shard file name "
                              "(NAME-NNNNNN.tar, no folder part): refused")
        samples = entry.get("samples")
        if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
            raise SchemaError(f"{path}: shard {name}: samples must be a count, got {samples!r:.40}")
    return manifest


def check_shard_names(shard_dir: str | Path, shards: list[dict]) -> None:
    """Checks that each manifest shard is a regular file in ``shard_dir`` (or missing).

    A missing file is the reader's shortfall to count; a symbolic link, folder, FIFO or
    device is refused, so nothing outside the folder is read and nothing blocks the reader.

    Raises:
        SchemaError: Naming the shard.
    """
    for entry in shards:
        name = entry["name"]
        if not SHARD_PATTERN.fullmatch(name):
            raise SchemaError(f"{shard_dir}: shard name {name!r:.120} is not a plain shard file name")
        try:
            mode = os.lstat(Path(shard_dir) / name).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(mode):
            raise SchemaError(f"{Path(shard_dir) / name}: the manifest names this shard, but it is "
                              "not a regular file in the folder (a link, folder, FIFO or device): "
                              "refused")


def verify_shards(shard_dir: str | Path) -> list[str]:
    """Compares every shard of a folder with the size and sha256 its manifest records.

    Returns:
        One line per shard that differs or is missing (empty when all agree).
    """
    import hashlib

    manifest = read_manifest(shard_dir)
    check_shard_names(shard_dir, manifest["shards"])
    problems = []
    for entry in sorted(manifest["shards"], key=lambda s: s["name"]):
        path = Path(shard_dir) / entry["name"]
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        size = path.stat().st_size
        if size != entry.get("bytes"):
            problems.append(f"{path}: {size} bytes, the manifest records {entry.get('bytes')}")
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != entry.get("sha256"):
            problems.append(f"{path}: sha256 {digest.hexdigest()} differs from the manifest's "
                            f"{entry.get('sha256')}")
    return problems


def shard_paths(shard_dir: str | Path) -> list[Path]:
    """The shard files listed by the manifest of ``shard_dir`` (in name order)."""
    manifest = read_manifest(shard_dir)
    check_shard_names(shard_dir, manifest["shards"])
    return [Path(shard_dir) / s["name"] for s in sorted(manifest["shards"], key=lambda s: s["name"])]
