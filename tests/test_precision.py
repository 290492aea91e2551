"""Mixed precision on the CPU: fp16's loss scaling through the DeepSpeed optimiser the engine
builds (first-step updates against fp32, the scale reported), and the choice ``auto`` makes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fpar.engine import deepspeed_setup

LR = 1e-3


@pytest.fixture()
def fp16_on_cpu(monkeypatch):
    """One rank's environment; DeepSpeed's CPU accelerator told that it runs fp16 (CPU
    kernels compute the tiny model below in half precision)."""
    from deepspeed.accelerator import get_accelerator

    from fpar.engine.distributed import find_free_port

    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),
                       ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(find_free_port()))):
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(type(get_accelerator()), "is_fp16_supported", lambda self: True)


def engine_for(precision: str, zero_stage: int = 0, grad_accum: int = 1,
               weight_decay: float = 0.0):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=weight_decay)
    config = deepspeed_setup.build_ds_config(precision, zero_stage, 8, grad_accum, 0.0)
    engine, _ = deepspeed_setup.initialize(model, optimizer, config)
    return engine


def first_update(engine, backward=deepspeed_setup.backward, grad_accum: int = 1) -> torch.Tensor:
    """Relative change of each weight after one optimiser step on a loss whose gradients
    (~1e-6) are below fp16's normal range unless scaled."""
    dtype = deepspeed_setup.engine_dtype(engine)
    before = [p.detach().float().clone() for p in engine.module.parameters()]
    generator = torch.Generator().manual_seed(1)
    for _ in range(grad_accum):
        x = torch.randn(8, 16, generator=generator)
        target = torch.randn(8, 4, generator=generator)
        loss = 1e-5 * (engine(x.to(dtype)).float() - target).pow(2).mean()
        backward(engine, loss)
        engine.step()
    after = [p.detach().float() for p in engine.module.parameters()]
    return torch.stack([(a - b).norm() / b.norm() for a, b in zip(after, before)])


def test_fp16_at_zero_0_scales_the_loss_its_optimiser_unscales(fp16_on_cpu):
    from deepspeed.runtime.fp16.unfused_optimizer import FP16_UnfusedOptimizer

    reference = first_update(engine_for("fp32"))
    engine = engine_for("fp16")
    assert isinstance(engine.optimizer, FP16_UnfusedOptimizer)  # a client torch Adam
    assert deepspeed_setup.unscaled_loss_scale(engine.optimizer) == 2.0**16
    assert deepspeed_setup.loss_scale(engine) == 2.0**16
    update = first_update(engine)
    assert engine.skipped_steps == 0
    assert torch.allclose(update, reference, rtol=0.1), (update, reference)
    # Without the scaling, step() divides unscaled gradients by 2^16 and Adam's epsilon
    # swallows the update.
    plain = first_update(engine_for("fp16"), backward=lambda e, loss: e.backward(loss))
    assert (plain < 0.1 * reference).all(), (plain, reference)


def test_fp16_scaling_is_not_applied_twice_by_a_deepspeed_that_scales_itself(fp16_on_cpu):
    reference = first_update(engine_for("fp32"))
    engine = engine_for("fp16")
    original = engine.backward

    def scaling_backward(loss, **kwargs):  # what a DeepSpeed with the fix upstream does
        return original(loss * engine.optimizer.loss_scale, **kwargs)

    engine.backward = scaling_backward
    assert torch.allclose(first_update(engine), reference, rtol=0.1)


def test_fp16_scaling_divides_by_the_accumulation_steps(fp16_on_cpu):
    reference = first_update(engine_for("fp32", grad_accum=2), grad_accum=2)
    update = first_update(engine_for("fp16", grad_accum=2), grad_accum=2)
    assert torch.allclose(update, reference, rtol=0.1), (update, reference)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_the_wrappers_state_creating_step_is_undone(fp16_on_cpu, precision):
    # DeepSpeed's unfused wrapper steps Adam once on zero gradients when it is built: one
    # step of bias correction late, and weight decay moves the master weights.
    reference = first_update(engine_for("fp32", weight_decay=0.1))
    engine = engine_for(precision, weight_decay=0.1)
    assert not engine.optimizer.optimizer.state
    for master, weight in zip(engine.optimizer.fp32_groups[0], engine.module.parameters()):
        assert torch.equal(master, weight.float())
    update = first_update(engine)
    assert torch.allclose(update, reference, rtol=0.1), (update, reference)


def test_zero_optimisers_and_bf16_are_left_to_deepspeed(fp16_on_cpu):
    bf16 = engine_for("bf16")
    assert deepspeed_setup.unscaled_loss_scale(bf16.optimizer) is None
    assert deepspeed_setup.loss_scale(bf16) is None
    assert deepspeed_setup.loss_scale(engine_for("fp32")) is None
    zero = engine_for("fp16", zero_stage=1)
    assert deepspeed_setup.unscaled_loss_scale(zero.optimizer) is None  # engine.backward scales
    assert deepspeed_setup.loss_scale(zero) == 2.0**16


def test_an_overflow_skips_the_step_and_the_reported_scale_halves(fp16_on_cpu):
    engine = engine_for("fp16")
    x = torch.randn(8, 16).half()
    loss = engine(x).float().sum() * float("inf")
    deepspeed_setup.backward(engine, loss)
    engine.step()
    assert engine.skipped_steps == 1
    assert deepspeed_setup.loss_scale(engine) == 2.0**15


@pytest.mark.parametrize(("capability", "native"), [((7, 0), False), ((7, 5), False),
                                                    ((8, 0), True), ((9, 0), True)])
def test_auto_picks_bf16_only_where_the_hardware_computes_it(monkeypatch, capability, native):
    class Props:
        major, minor = capability

    def is_bf16_supported(including_emulation=True):
        # What torch answers: emulation makes every CUDA device "support" bf16.
        return including_emulation or Props.major >= 8

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Props)
    assert deepspeed_setup.native_bf16() is native
    assert deepspeed_setup.resolve_precision("auto") == ("bf16" if native else "fp16")
    assert deepspeed_setup.resolve_precision("fp16") == "fp16"

    def older_torch(*args):  # no including_emulation argument
        if args:
            raise TypeError("unexpected argument")
        return True

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: older_torch(*a, *k))
    assert deepspeed_setup.native_bf16() is native
