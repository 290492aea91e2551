"""The arithmetic of ``fpar bench gpu``, free of any device: peaks, FLOPs, MFU, batch search.

* Peak dense tensor-core TFLOP/s per GPU model (half precision, no sparsity), looked up by
  the name CUDA reports; ``--peak-tflops`` replaces it.
* FLOPs of one training step counted by :class:`torch.utils.flop_counter.FlopCounterMode`
  (matrix products and convolutions, forward and backward); the optimiser's element-wise
  work is not counted, as usual for MFU.
* The largest batch that fits: doubling from a start until a step runs out of memory, then
  bisecting between the last batch that fitted and the first that did not.
* Variants ``bf16``, ``fp16+cl``, ``bf16+cl+compile+z1``...: precision, channels-last,
  ``torch.compile``, ZeRO stage.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

# Dense bf16/fp16 tensor-core peaks (TFLOP/s) from the vendors' data sheets. More specific
# names first: the first entry whose key is part of the device name wins.
PEAK_TFLOPS: tuple[tuple[str, dict[str, float | None]], ...] = (
    ("H100 PCIe", {"bf16": 756.0, "fp16": 756.0}),
    ("H100 NVL", {"bf16": 835.0, "fp16": 835.0}),
    ("H100", {"bf16": 989.4, "fp16": 989.4}),  # SXM (e.g. "NVIDIA H100 80GB HBM3")
    ("H200", {"bf16": 989.4, "fp16": 989.4}),
    ("H20", {"bf16": 148.0, "fp16": 148.0}),
    ("GH200", {"bf16": 989.4, "fp16": 989.4}),
    ("A100", {"bf16": 312.0, "fp16": 312.0}),
    ("A10G", {"bf16": 70.0, "fp16": 70.0}),
    ("A10", {"bf16": 125.0, "fp16": 125.0}),
    ("L40S", {"bf16": 362.05, "fp16": 362.05}),
    ("L40", {"bf16": 181.0, "fp16": 181.0}),
    ("L4", {"bf16": 121.0, "fp16": 121.0}),
    ("V100", {"bf16": None, "fp16": 125.0}),  # no bf16 tensor cores
    ("T4", {"bf16": None, "fp16": 65.0}),
)

PRECISIONS = ("bf16", "fp16", "fp32")
OOM_MARKERS = ("out of memory", "CUDNN_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED")


def peak_tflops(device_name: str | None, precision: str,
                override: float | None = None) -> tuple[float | None, str]:
    """The peak used for MFU and where it came from.

    Returns:
        ``(tflops, source)``: ``override`` when given, else the table's figure for the
        first key found in ``device_name`` (None, with the reason, if none matches or the
        GPU has no tensor cores for ``precision``).
    """
    if override is not None:
        if override <= 0:
            raise ValueError(f"--peak-tflops must be > 0, got {override}")
        return float(override), "--peak-tflops"
    if not device_name:
        return None, "no device name"
    for key, peaks in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            value = peaks.get(precision)
            if value is None:
                return None, f"{key}: no {precision} tensor-core peak in the table"
            return value, f"table: {key} dense {precision}"
    return None, f"{device_name!r} is not in the peak table; give --peak-tflops"


def mfu(flops_per_step: float, step_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s over the peak (None without a peak)."""
    if peak is None:
        return None
    if step_s <= 0:
        raise ValueError(f"step time must be > 0, got {step_s}")
    return flops_per_step / step_s / (peak * 1e12)


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call of ``step`` (forward and backward of a training step)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())


def is_oom(err: BaseException) -> bool:
    """True for an out-of-memory failure of the allocator, cuDNN or cuBLAS."""
    import torch

    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err) for m in OOM_MARKERS)


@dataclasses.dataclass
class BatchSearch:
    """Result of :func:`largest_batch`.

    Attributes:
        largest: Largest batch that ran (0 if not even the start did).
        first_failed: Smallest batch that ran out of memory (None if none did).
        capped: The search stopped at ``limit`` without running out of memory.
        tried: ``(batch, fitted)`` in the order tried.
    """

    largest: int
    first_failed: int | None
    capped: bool
    tried: list[tuple[int, bool]]


def largest_batch(fits: Callable[[int], bool], start: int = 8, limit: int = 4096,
                  granularity: int = 1) -> BatchSearch:
    """The largest batch for which ``fits(batch)`` is True, assuming it is monotone.

    Doubles from ``start`` (capped at ``limit``) until a batch fails, then bisects between
    the largest success and the smallest failure until they are ``granularity`` apart.
    When ``start`` fails, bisects below it.

    Args:
        fits: Runs a step at a batch size; True if it ran, False if out of memory.
        start: First batch tried.
        limit: Largest batch tried.
        granularity: Precision of the answer (e.g. 8: multiples of 8 are tried).
    """
    if not 1 <= start <= limit or granularity < 1:
        raise ValueError(f"batch search needs 1 <= start ({start}) <= limit ({limit}) "
                         f"and granularity >= 1 ({granularity})")
    tried: list[tuple[int, bool]] = []

    def attempt(batch: int) -> bool:
        ok = bool(fits(batch))
        tried.append((batch, ok))
        return ok

    lo, hi, batch = 0, None, start
    while True:
        if not attempt(batch):
            hi = batch
            break
        lo = batch
        if batch >= limit:
            return BatchSearch(lo, None, True, tried)
        batch = min(batch * 2, limit)
    while hi - lo > granularity:
        mid = (lo + hi) // 2
        if granularity > 1:
            mid = max(granularity, mid // granularity * granularity)
        if mid <= lo or mid >= hi:
            break
        if attempt(mid):
            lo = mid
        else:
            hi = mid
    return BatchSearch(lo, hi, False, tried)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way of running the training step."""

    precision: str = "bf16"
    channels_last: bool = False
    compile: bool = False
    zero_stage: int = 0

    @property
    def name(self) -> str:
        parts = [self.precision]
        if self.channels_last:
            parts.append("cl")
        if self.compile:
            parts.append("compile")
        if self.zero_stage:
            parts.append(f"z{self.zero_stage}")
        return "+".join(parts)


def parse_variants(text: str) -> list[Variant]:
    """``"bf16,fp16+cl,bf16+cl+compile+z1"`` as variants (``cl``: channels-last)."""
    variants = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        precision, *flags = item.split("+")
        if precision not in PRECISIONS:
            raise ValueError(f"variant {item!r}: precision {precision!r} is not one of "
                             f"{', '.join(PRECISIONS)}")
        fields: dict = {"precision": precision}
        for flag in flags:
            if flag == "cl":
                fields["channels_last"] = True
            elif flag == "compile":
                fields["compile"] = True
            elif flag in ("z0", "z1"):
                fields["zero_stage"] = int(flag[1])
            else:
                raise ValueError(f"variant {item!r}: unknown part {flag!r} (use cl, "
                                 "compile, z0 or z1)")
        variants.append(Variant(**fields))
    if not variants:
        raise ValueError(f"no variants in {text!r}")
    if len({v.name for v in variants}) != len(variants):
        raise ValueError(f"variants repeated in {text!r}")
    return variants


def step_figures(step_times: Sequence[float], batch: int, flops_per_clip: float,
                 peak: float | None) -> dict:
    """Median step time, clips/s, TFLOP/s and MFU of a series of timed steps."""
    from launcher.benchmarks.stats import median

    if not step_times:
        raise ValueError("no timed steps")
    step_s = median(step_times)
    flops = flops_per_clip * batch
    return {"step_s": step_s, "step_s_min": min(step_times),
            "clips_per_s": batch / step_s, "tflops_per_s": flops / step_s / 1e12,
            "mfu": mfu(flops, step_s, peak)}


def waiting_fraction(data_s: Sequence[float], step_s: Sequence[float]) -> float:
    """Median share of a step spent waiting for data (``data / (data + compute)``)."""
    from launcher.benchmarks.stats import median

    if len(data_s) != len(step_s) or not data_s:
        raise ValueError("one data time per step is needed")
    return median([d / (d + s) if d + s > 0 else 0.0 for d, s in zip(data_s, step_s)])


def workers_enough(fractions: dict[int, float], threshold: float) -> int | None:
    """The fewest loader workers whose waiting fraction is below ``threshold`` (None: none)."""
    for workers in sorted(fractions):
        if fractions[workers] < threshold:
            return workers
    return None


def best_variant(variants: dict[str, dict]) -> str | None:
    """Name of the measured variant with the most clips/s (None if none was measured)."""
    measured = {name: v["clips_per_s"] for name, v in variants.items() if "clips_per_s" in v}
    return max(measured, key=measured.get) if measured else None
