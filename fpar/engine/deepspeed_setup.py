"""The DeepSpeed configuration and engine for a run: precision, ZeRO stage, accumulation.

Every run, one process or many, goes through ``deepspeed.initialize``. Precision is
resolved and checked before anything starts: ``auto`` becomes bf16 on a GPU that computes
it in hardware, fp16 (with dynamic loss scaling) on an older GPU and fp32 on a CPU; fp16
needs a CUDA GPU (DeepSpeed's CPU accelerator refuses it only after the process group is
up, with a less helpful message). Every backward pass goes through :func:`backward`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable

import torch
from torch import nn

from fpar.config import ConfigError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_precision(precision: str, cuda_available: bool | None = None,
                      bf16_supported: bool | None = None) -> str:
    """The precision a run uses: ``auto`` picks the fastest this machine trains safely.

    Args:
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``; all but ``auto`` pass through.
        cuda_available: Override of ``torch.cuda.is_available()`` (for tests).
        bf16_supported: Override of :func:`native_bf16` (for tests).

    Returns:
        ``bf16`` on a GPU with bf16, ``fp16`` on other GPUs, ``fp32`` without a GPU.
    """
    if precision != "auto":
        return precision
    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    if not cuda:
        return "fp32"
    bf16 = native_bf16() if bf16_supported is None else bf16_supported
    return "bf16" if bf16 else "fp16"


def native_bf16() -> bool:
    """Whether the current CUDA device computes bf16 in hardware (compute capability 8.0+,
    or ROCm). ``torch.cuda.is_bf16_supported()`` alone also counts emulation, which is true
    on a V100 or T4 where bf16 runs far slower than fp16."""
    if torch.version.hip:
        return True
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # a torch without the argument
        return torch.cuda.get_device_properties(torch.cuda.current_device()).major >= 8


def check_precision(precision: str, zero_stage: int, cuda_available: bool | None = None) -> None:
    """Refuses a precision or ZeRO stage this machine cannot run, before any start-up.

    Args:
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        zero_stage: 0, 1, 2 or 3.
        cuda_available: Override of ``torch.cuda.is_available()`` (for tests).

    Raises:
        ConfigError: With the reason and what to use instead.
    """
    precision = resolve_precision(precision, cuda_available)
    if precision not in PRECISIONS:
        raise ConfigError(f"train.precision: {precision!r} is not one of auto, "
                          f"{', '.join(PRECISIONS)}")
    if zero_stage not in (0, 1, 2, 3):
        raise ConfigError(f"train.zero_stage: {zero_stage} is not one of 0, 1, 2, 3")
    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    if precision == "fp16" and not cuda:
        raise ConfigError(
            "train.precision: fp16 needs a CUDA GPU (DeepSpeed's CPU accelerator does not "
            "support fp16); use train.precision=bf16 or train.precision=fp32 on CPU")


def build_ds_config(precision: str, zero_stage: int, micro_batch: int, grad_accum: int,
                    grad_clip: float) -> dict[str, Any]:
    """Returns the DeepSpeed config dict for one run.

    Args:
        precision: ``fp32``, ``bf16``, ``fp16`` (dynamic loss scaling) or ``auto``
            (resolved for this machine).
        zero_stage: ZeRO optimisation stage.
        micro_batch: Clips per rank per forward pass.
        grad_accum: Micro-batches accumulated per optimiser step.
        grad_clip: Global gradient-norm clip (0 = off).
    """
    precision = resolve_precision(precision)
    if micro_batch < 1 or grad_accum < 1:
        raise ConfigError(f"batch size ({micro_batch}) and train.grad_accum_steps "
                          f"({grad_accum}) must be >= 1")
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": float(grad_clip),
        "zero_optimization": {"stage": zero_stage},
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        # The trainer prints its own progress; DeepSpeed's periodic lines would interleave.
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    return config


def initialize(model: nn.Module, optimizer: torch.optim.Optimizer, ds_config: dict[str, Any],
               lr_scheduler: Callable | None = None):
    """Wraps ``model`` and ``optimizer`` in a DeepSpeed engine.

    Returns:
        ``(engine, scheduler)``; the engine steps the scheduler at each optimiser step and
        saves it in its checkpoints.
    """
    import deepspeed  # the accelerator is chosen in distributed.prepare_accelerator

    engine, _, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, config=ds_config, lr_scheduler=lr_scheduler)
    _undo_warmup_step(engine.optimizer)
    dtype = engine_dtype(engine)
    # DeepSpeed casts parameters to bf16/fp16 but leaves buffers (BatchNorm running
    # statistics) in fp32, which CPU batch norm refuses to mix with half inputs.
    for buf in engine.module.buffers():
        if buf.is_floating_point() and buf.dtype != dtype:
            buf.data = buf.data.to(dtype)
    return engine, scheduler


def release(engine) -> None:
    """Destroys ``engine`` so that its model, optimizer and process groups can be freed.

    ZeRO-3 keeps two module-level references that ``destroy`` leaves in place: the top
    module on its forward-module stack (pushed when the hooks are set up, never popped)
    and every parameter coordinator in a class-wide cache of a method. Through them the
    model, its partitioned parameters and the groups they hold would live until the
    interpreter is torn down (one model per stage), and a gloo group still running then
    now and then aborts a finished run. The cache only saves recomputation.
    """
    module = getattr(engine, "module", None)
    engine.destroy()
    offload = sys.modules.get("deepspeed.runtime.zero.parameter_offload")
    stack = getattr(offload, "FWD_MODULE_STACK", None)
    if module is not None and isinstance(stack, list):
        stack[:] = [m for m in stack if m is not module]
    coordinator = sys.modules.get("deepspeed.runtime.zero.partitioned_param_coordinator")
    cls = getattr(coordinator, "PartitionedParameterCoordinator", None)
    method = getattr(cls, "_PartitionedParameterCoordinator__params_to_release", None)
    # The cache sits inside DeepSpeed's NVTX wrapper, in its closure.
    for held in [method, *(c.cell_contents for c in getattr(method, "__closure__", None) or ())]:
        if hasattr(held, "cache_clear"):
            held.cache_clear()


def backward(engine, loss: torch.Tensor) -> None:
    """``engine.backward(loss)`` with the loss scaled as the engine's fp16 optimiser expects.

    DeepSpeed's fp16 wrappers outside ZeRO (``FP16_Optimizer``, ``FP16_UnfusedOptimizer``:
    fp16 at ZeRO stage 0) divide every gradient by their current loss scale in ``step``, but
    ``engine.backward`` of DeepSpeed 0.19 multiplies the loss by that scale only for ZeRO
    optimisers: unscaled fp16 gradients underflow and the updates shrink towards Adam's
    epsilon. For those wrappers the gradient entering the graph at ``loss`` is set to exactly
    ``scale / accumulation steps`` (what ``step`` undoes), whether or not the installed
    DeepSpeed scaled it already, so the fix can neither be missing nor applied twice.
    """
    scale = unscaled_loss_scale(engine.optimizer)
    if scale is None:
        engine.backward(loss)
        return
    wanted = scale / engine.gradient_accumulation_steps()
    handle = loss.register_hook(lambda grad: torch.full_like(grad, wanted))
    try:
        engine.backward(loss)
    finally:
        handle.remove()


def unscaled_loss_scale(optimizer) -> float | None:
    """The loss scale ``backward`` must apply itself: that of an fp16 wrapper DeepSpeed's
    ``engine.backward`` does not scale for (see :func:`backward`), else None."""
    from deepspeed.runtime.fp16.fused_optimizer import FP16_Optimizer
    from deepspeed.runtime.fp16.unfused_optimizer import FP16_UnfusedOptimizer

    if not isinstance(optimizer, (FP16_Optimizer, FP16_UnfusedOptimizer)):
        return None
    if not optimizer.loss_scale_config.use_grad_scaling:  # the bf16 wrapper: no scaling
        return None
    return float(optimizer.loss_scale_config.cur_scale)


def loss_scale(engine) -> float | None:
    """fp16's current (dynamic) loss scale; None in bf16 and fp32."""
    if not engine.fp16_enabled():
        return None
    scale = getattr(engine.optimizer, "loss_scale", None)
    return None if scale is None else float(scale)


def _undo_warmup_step(optimizer) -> None:
    """Undoes the zero-gradient step DeepSpeed's unfused wrapper (fp16 and bf16 at ZeRO 0)
    takes at construction to create the inner optimiser's state.

    That step counts as Adam's first, so every bias correction of the run is one step late
    (the first real update is 0.74x fp32's) and, with weight decay, it moves the fp32 master
    weights away from the model's. Adam creates its state again at the first real step.
    """
    from deepspeed.runtime.fp16.unfused_optimizer import FP16_UnfusedOptimizer

    if not isinstance(optimizer, FP16_UnfusedOptimizer):
        return
    optimizer.optimizer.state.clear()
    with torch.no_grad():
        for masters, weights in zip(optimizer.fp32_groups, optimizer.fp16_groups):
            for master, weight in zip(masters, weights):
                master.copy_(weight)


def engine_dtype(engine) -> torch.dtype:
    """The floating dtype the engine's module computes in."""
    if engine.bfloat16_enabled():
        return torch.bfloat16
    if engine.fp16_enabled():
        return torch.float16
    return torch.float32


def grad_norm(engine, before_step: float | None) -> float | None:
    """The global gradient norm of the last optimiser step.

    DeepSpeed reports it for ZeRO and mixed precision; for plain fp32 at stage 0 it does
    not, so the trainer measures it itself before stepping and passes it in.
    """
    value = engine.get_global_grad_norm()
    if value is None:
        return before_step
    return float(value.item() if isinstance(value, torch.Tensor) else value)


def local_grad_norm(model: nn.Module) -> float:
    """L2 norm of the (already reduced) gradients held by this rank's parameters."""
    norms = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
    if not norms:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(norms)).item())
