"""The batch contract: what the loader delivers, and what the model is given.

The loader's batches stay uint8, a quarter of the bytes of floats, and in the layout the
decoder and the crop produce; the float work (planar layout, ImageNet mean/std, map and
flow scaling) runs once per batch in the training process on the model's device
(:func:`prepare_batch`), as FFCV and DALI pipelines do. Every model, the trainer, the
evaluation and the benchmarks go through these two functions.

Loader batch (CPU; pinned when the model runs on a GPU):

=============  ==================================  =======================================
key            dtype, shape                        meaning
=============  ==================================  =======================================
frames         uint8 (B, T, S, S, 3)               RGB crops
motion         uint8 (B, T, s, s)                  moving fraction x 255
flow           uint8 (B, T, 10, S, S)              warp flow q: q * 2/255 - 1 = displacement
                                                   / flow bound (x channels even)
<label>        int64 (B,)                          one per label key (-1: none)
segment_id     list of str
is_repeat      bool (B,)                           padding or stand-in, not a new sample
=============  ==================================  =======================================

Model batch (:func:`prepare_batch`): ``frames`` float (B, T, 3, S, S) normalised with the
ImageNet mean and std, ``motion`` float (B, T, s, s) in [0, 1], ``flow`` float
(B, T, 10, S, S) in [-1, 1], in the model's floating dtype; labels and flags on the device.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def batch_buffer(shape: Sequence[int], dtype: torch.dtype = torch.uint8, *, pin: bool = False,
                 shared: bool = False) -> torch.Tensor:
    """A batch-sized CPU buffer: pinned for a fast, asynchronous copy to a GPU; in shared
    memory for a loader worker (sent to the training process as a handle); else
    numpy-allocated (numpy asks for transparent huge pages on large arrays, torch's CPU
    allocator does not, so filling it takes far fewer page faults)."""
    shape = tuple(int(v) for v in shape)
    if pin:
        return torch.empty(shape, dtype=dtype, pin_memory=True)
    if shared:
        nbytes = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
        storage = torch.UntypedStorage._new_shared(max(nbytes, 1))
        return torch.empty(0, dtype=dtype).set_(storage.untyped(), 0, shape)
    return torch.from_numpy(np.empty(shape, dtype=torch.empty((), dtype=dtype).numpy().dtype))


def stack_arrays(arrays: list, pin: bool) -> torch.Tensor:
    """Stacks arrays or tensors (mirrored views too) with one copy into a batch buffer."""
    arrays = [a.numpy() if isinstance(a, torch.Tensor) else a for a in arrays]
    out = batch_buffer((len(arrays), *arrays[0].shape), torch.from_numpy(np.empty(0, arrays[0].dtype)).dtype, pin=pin)
    np.stack(arrays, out=out.numpy())
    return out


_STATS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _frame_stats(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` on ``device`` with ``v * scale + shift = (v / 255 - mean) / std``."""
    key = (device.type, device.index)
    if key not in _STATS:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1) * 255.0
        scale = 1.0 / (torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1) * 255.0)
        _STATS[key] = (scale.to(device), (-mean * scale).to(device))
    return _STATS[key]


def normalise_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, S, S, 3) RGB -> float32 (B, T, 3, S, S) with ImageNet mean/std, on the
    tensor's own device (one conversion and one fused multiply-add)."""
    if frames.dtype != torch.uint8 or frames.dim() != 5 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 (B, T, S, S, 3) frames, got {frames.dtype} {tuple(frames.shape)}")
    scale, shift = _frame_stats(frames.device)
    planar = frames.permute(0, 1, 4, 2, 3).float()
    return torch.addcmul(shift, planar, scale).contiguous()


def prepare_batch(batch: dict, device: torch.device, dtype: torch.dtype = torch.float32) -> dict:
    """The model batch of a loader batch: moved to ``device`` (asynchronously from pinned
    memory), frames normalised and planar, maps and flow scaled, floats in ``dtype``."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
        out[key] = value
    for key, scale in (("frames", None), ("motion", _motion_units), ("flow", _flow_units)):
        value = out.get(key)
        if not isinstance(value, torch.Tensor):
            continue
        if value.dtype == torch.uint8:
            out[key] = (normalise_frames(value) if scale is None else scale(value.float())).to(dtype)
        elif value.is_floating_point():  # inputs made as floats already (toy models, tests)
            out[key] = value.to(dtype)
    return out


def _motion_units(value: torch.Tensor) -> torch.Tensor:
    return value.div_(255.0)


def _flow_units(value: torch.Tensor) -> torch.Tensor:
    return value.mul_(2.0 / 255.0).sub_(1.0)


def random_batch(batch_size: int, num_frames: int, crop: int, label_classes: dict[str, int],
                 seed: int = 0, map_stride: int = 4) -> dict:
    """A loader batch of random pixels and labels (maps at 1/``map_stride`` of the crop), for
    benchmarks that time the model without reading shards."""
    gen = torch.Generator().manual_seed(seed)
    side = max(1, crop // map_stride)
    batch = {"frames": torch.randint(0, 256, (batch_size, num_frames, crop, crop, 3), generator=gen,
                                     dtype=torch.uint8),
             "motion": torch.randint(0, 256, (batch_size, num_frames, side, side), generator=gen,
                                     dtype=torch.uint8),
             "segment_id": [str(i) for i in range(batch_size)],
             "is_repeat": torch.zeros(batch_size, dtype=torch.bool)}
    for head, classes in label_classes.items():
        batch[head] = torch.randint(0, classes, (batch_size,), generator=gen)
    return batch
