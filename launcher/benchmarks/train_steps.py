"""One training step, two ways, for ``fpar bench train``: the DeepSpeed engine and plain torch.

Both start from the same weights (the experiment's seed), the same Adam parameter groups
and learning-rate schedule, and step on the same batch.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch


def _model_and_optimizer(cfg):
    from fpar.engine.optim import build_adam, scheduler_factory, stage_param_groups
    from fpar.models import build_model

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model)
    stage = cfg.train.stages[0]
    optimizer = build_adam(stage_param_groups(model, cfg.optim, stage), cfg.optim)
    # The schedule only needs a length; the figure does not depend on it.
    return model, optimizer, scheduler_factory(cfg.optim, stage, steps_per_epoch=1000)


def deepspeed_stepper(cfg, batch: dict, device: torch.device) -> Callable[[], float]:
    """A function doing one engine step (forward, loss, backward, step); returns the loss.

    Its ``release()`` destroys the engine (before the process group goes).
    """
    from fpar.data.batch import prepare_batch
    from fpar.engine import deepspeed_setup
    from fpar.models import compute_loss

    model, optimizer, schedule = _model_and_optimizer(cfg)
    ds_config = deepspeed_setup.build_ds_config(cfg.train.precision, cfg.train.zero_stage,
                                                cfg.data.batch_size, 1, cfg.train.grad_clip)
    engine, _ = deepspeed_setup.initialize(model, optimizer, ds_config, schedule)
    engine.train()
    on_device = prepare_batch(batch, device, deepspeed_setup.engine_dtype(engine))

    def step() -> float:
        loss, _ = compute_loss(cfg.model, engine(on_device), on_device)
        deepspeed_setup.backward(engine, loss)
        engine.step()
        return float(loss.detach())

    step.release = lambda: deepspeed_setup.release(engine)
    return step


def plain_stepper(cfg, batch: dict, device: torch.device) -> Callable[[], float]:
    """A function doing one plain torch step with the same model, optimiser and schedule."""
    from fpar.data.batch import prepare_batch
    from fpar.models import compute_loss

    model, optimizer, schedule = _model_and_optimizer(cfg)
    model.to(device).train()
    scheduler = schedule(optimizer)
    on_device = prepare_batch(batch, device, torch.float32)
    params = [p for p in model.parameters() if p.requires_grad]
    bf16 = cfg.train.precision == "bf16"

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 \
            else contextlib.nullcontext()
        with autocast:
            loss, _ = compute_loss(cfg.model, model(on_device), on_device)
        loss.backward()
        if cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
        optimizer.step()
        scheduler.step()
        return float(loss.detach())

    return step
