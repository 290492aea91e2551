"""Every registered model: shapes, gradients, parameter groups, losses and MS targets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fpar.config import ConfigError, from_dict
from fpar.models import (
    ModelConfig,
    ModelOutput,
    build_model,
    compute_loss,
    list_models,
    ms_target,
    stage_size,
)
from fpar.models.sparnet import SparNet

HEAD_LAYOUTS = {"verb_noun": {"verb": 5, "noun": 7}, "single": {"class": 4}}
B, T, SIZE = 2, 3, 64


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared, busy machine extra threads only spin."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(name: str, heads: dict[str, int], **kw) -> ModelConfig:
    """Same architecture as the real thing, with a ResNet-18 and small hidden sizes."""
    base = dict(name=name, num_classes=heads, backbone="resnet18", pretrained="none",
                input_size=SIZE, convlstm_hidden=16, ms_hidden=8, film_hidden=4,
                discriminator_hidden=8)
    base.update(kw)
    return ModelConfig(**base)


def make_batch(heads: dict[str, int], size: int = SIZE, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    batch = {
        "frames": torch.randn(B, T, 3, size, size, generator=gen),
        "motion": torch.rand(B, T, 40, 40, generator=gen),
        "flow": torch.randn(B, T, 10, size, size, generator=gen),
    }
    for key, count in heads.items():
        batch[key] = torch.randint(count, (B,), generator=gen)
    return batch


def _grads_ok(params) -> list[str]:
    return [n for n, p in params if p.grad is None or not torch.isfinite(p.grad).all()]


@pytest.mark.parametrize("layout", sorted(HEAD_LAYOUTS))
@pytest.mark.parametrize("name", [m["name"] for m in list_models()])
def test_every_model_shapes_gradients_and_frozen_groups(name, layout):
    torch.manual_seed(0)
    heads = HEAD_LAYOUTS[layout]
    cfg = tiny_config(name, heads)
    model = build_model(cfg).train()
    batch = make_batch(heads)

    out = model(batch)
    assert isinstance(out, ModelOutput)
    assert {k: tuple(v.shape) for k, v in out.logits.items()} == {
        k: (B, n) for k, n in heads.items()
    }
    s_ms = stage_size(SIZE, cfg.ms_tap)
    if out.ms is not None:
        assert tuple(out.ms.shape) == (B, T, 2, s_ms, s_ms)
    if out.attention is not None:
        s_att = stage_size(SIZE, cfg.features_from)
        assert tuple(out.attention.shape) == (B, T, s_att, s_att)
        assert torch.allclose(out.attention.sum(dim=(2, 3)), torch.ones(B, T), atol=1e-5)
    if "static_dynamic" in out.aux_logits:
        assert tuple(out.aux_logits["static_dynamic"].shape) == (2 * B, 2)

    loss, parts = compute_loss(cfg, out, batch)
    assert torch.isfinite(loss) and parts["loss"] == pytest.approx(loss.item())
    loss.backward()
    assert _grads_ok(model.named_parameters()) == []

    # The groups partition the parameters: each in exactly one group.
    groups = model.param_groups()
    grouped = [id(p) for ps in groups.values() for p in ps]
    assert len(grouped) == len(set(grouped)) == len(list(model.parameters()))
    assert "classifier" in groups

    # Freeze every group but the classifier (Ego-RNN's stage 1 does much the same).
    model.zero_grad(set_to_none=True)
    frozen = [p for g, ps in groups.items() if g != "classifier" for p in ps]
    for p in frozen:
        p.requires_grad_(False)
    loss, _ = compute_loss(cfg, model(batch), batch)
    loss.backward()
    assert all(p.grad is None for p in frozen)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in groups["classifier"])


def test_sparnet_default_hidden_512_resnet34():
    torch.manual_seed(0)
    heads = HEAD_LAYOUTS["verb_noun"]
    cfg = ModelConfig(name="sparnet", num_classes=heads, pretrained="none", input_size=SIZE)
    assert (cfg.backbone, cfg.convlstm_hidden) == ("resnet34", 512)
    model = build_model(cfg).train()
    batch = make_batch(heads)
    out = model(batch)
    assert out.logits["verb"].shape == (B, 5) and out.logits["noun"].shape == (B, 7)
    assert out.ms.shape == (B, T, 2, 2, 2)
    loss, _ = compute_loss(cfg, out, batch)
    loss.backward()
    assert _grads_ok(model.named_parameters()) == []
    assert model.recurrent.cell.gates.out_channels == 4 * 512


def test_convlstm_init_is_xavier_with_zero_bias():
    torch.manual_seed(0)
    model = build_model(tiny_config("baseline", {"class": 4}, convlstm_hidden=64))
    gates = model.recurrent.cell.gates
    assert torch.count_nonzero(gates.bias) == 0
    fan_in = gates.in_channels * 9
    fan_out = gates.out_channels * 9
    assert gates.weight.std().item() == pytest.approx((2.0 / (fan_in + fan_out)) ** 0.5, rel=0.05)


def test_convlstm_forget_bias_opens_only_the_forget_gate():
    model = build_model(tiny_config("baseline", {"class": 4}, convlstm_hidden=8,
                                    convlstm_forget_bias=1.0))
    i, f, o, g = model.recurrent.cell.gates.bias.detach().chunk(4)
    assert torch.all(f == 1.0)
    assert torch.count_nonzero(torch.cat([i, o, g])) == 0


@pytest.mark.parametrize("tap", ["conv3_x", "conv4_x", "conv5_x"])
@pytest.mark.parametrize("size", [64, 112, 224])
def test_ms_target_from_stored_map_matches_prediction(tap, size):
    torch.manual_seed(0)
    cfg = tiny_config("sparnet", {"class": 4}, ms_tap=tap, input_size=size, convlstm_hidden=4,
                      ms_hidden=2)
    model = build_model(cfg).eval()
    # A stored map at 5/4 of the crop, the crop taken at an offset, then flipped like frames.
    stored = int(size * 1.25)
    motion = torch.zeros(1, 2, stored, stored)
    motion[..., :, : stored // 2] = 1.0
    top, left = (stored - size) // 3, (stored - size) // 2
    cropped = motion[..., top: top + size, left: left + size].flip(-1)
    frames = torch.randn(1, 2, 3, size, size)
    with torch.no_grad():
        out = model({"frames": frames})
    s = stage_size(size, tap)
    target = ms_target(cropped, s, cfg.ms_tau)
    assert target.dtype == torch.long
    assert tuple(target.shape) == tuple(out.ms.shape[:2] + out.ms.shape[-2:]) == (1, 2, s, s)
    # The moving half was on the left before the flip: on the right after it.
    assert target[..., -1].eq(1).all() and target[..., 0].eq(0).all()
    fractions = ms_target(cropped, s, cfg.ms_tau, "regression")
    assert fractions.shape == target.shape and fractions.dtype == torch.float32
    assert torch.equal(target, (fractions >= cfg.ms_tau).long())
    loss, parts = compute_loss(cfg, out, {"frames": frames, "motion": cropped,
                                          "class": torch.tensor([1])})
    assert torch.isfinite(loss) and "loss_ms" in parts


def test_ms_target_area_downsampling_and_threshold():
    motion = torch.zeros(1, 1, 4, 4)
    motion[0, 0, :2, :2] = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # half of a cell moving
    motion[0, 0, :2, 2:] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # a quarter
    motion[0, 0, 2:, 2:] = 1.0
    frac = ms_target(motion, 2, 0.5, "regression")[0, 0]
    assert torch.allclose(frac, torch.tensor([[0.5, 0.25], [0.0, 1.0]]))
    assert ms_target(motion, 2, 0.5)[0, 0].tolist() == [[1, 0], [0, 1]]
    assert ms_target(motion, 2, 0.3)[0, 0].tolist() == [[1, 0], [0, 1]]
    assert ms_target(motion, 2, 0.2)[0, 0].tolist() == [[1, 1], [0, 1]]
    with pytest.raises(ValueError, match="motion must be"):
        ms_target(motion[0], 2, 0.5)


@pytest.mark.parametrize("loss_kind", ["mse", "l1"])
def test_ms_regression_variant(loss_kind):
    torch.manual_seed(0)
    heads = {"class": 4}
    cfg = tiny_config("egornn_ms", heads, ms_kind="regression", ms_regression_loss=loss_kind,
                      ms_alpha=2.0)
    model = build_model(cfg).train()
    batch = make_batch(heads)
    out = model(batch)
    assert out.ms.shape == (B, T, 2, 2) and out.ms.min() >= 0 and out.ms.max() <= 1
    loss, parts = compute_loss(cfg, out, batch)
    target = ms_target(batch["motion"], 2, cfg.ms_tau, "regression")
    fn = F.mse_loss if loss_kind == "mse" else F.l1_loss
    assert parts["loss_ms"] == pytest.approx(fn(out.ms, target).item(), rel=1e-5)
    assert loss.item() == pytest.approx(parts["loss_class"] + 2.0 * parts["loss_ms"], rel=1e-5)


def test_ms_positive_weight_weighs_moving_cells():
    motion = torch.zeros(1, 1, 4, 4)
    motion[..., :2, :2] = 1.0  # one of the four 2x2 cells moves
    ms = torch.zeros(1, 1, 2, 2, 2)
    ms[:, :, 0] = 2.0  # every cell predicted static
    out = ModelOutput({}, ms=ms)
    plain = ModelConfig(num_classes={"verb": 3}, ms_alpha=1.0)
    heavy = ModelConfig(num_classes={"verb": 3}, ms_alpha=1.0, ms_positive_weight=3.0)
    batch = {"motion": motion}
    wrong, right = F.softplus(torch.tensor(2.0)).item(), F.softplus(torch.tensor(-2.0)).item()
    assert _ms_part(plain, out, batch) == pytest.approx((wrong + 3 * right) / 4, rel=1e-5)
    # Weighted mean: the missed moving cell counts three times.
    assert _ms_part(heavy, out, batch) == pytest.approx((3 * wrong + 3 * right) / 6, rel=1e-5)
    with pytest.raises(ValueError, match="ms_positive_weight"):
        ModelConfig(ms_positive_weight=0.0)


def _ms_part(cfg: ModelConfig, out: ModelOutput, batch: dict) -> float:
    logits = {"verb": torch.zeros(1, 3)}
    _, parts = compute_loss(cfg, ModelOutput(logits, ms=out.ms), {**batch, "verb": torch.tensor([0])})
    return parts["loss_ms"]


def test_compute_loss_sums_heads_ignores_missing_labels_and_rebuilds_discriminator_targets():
    cfg = ModelConfig(num_classes={"verb": 3, "noun": 4}, ms_alpha=0.5, discriminator_weight=2.0)
    verb = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    noun = torch.randn(2, 4)
    ms = torch.randn(2, 1, 2, 2, 2)
    sd = torch.tensor([[0.0, 3.0], [1.0, 0.0], [4.0, 0.0], [0.0, 1.0]])
    motion = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 0.0], [1.0, 1.0]]]])
    batch = {"verb": torch.tensor([0, -1]), "noun": torch.tensor([-1, -1]), "motion": motion}
    out = ModelOutput({"verb": verb, "noun": noun}, ms=ms, aux_logits={"static_dynamic": sd})
    loss, parts = compute_loss(cfg, out, batch)
    want_verb = F.cross_entropy(verb[:1], torch.tensor([0]))
    want_ms = F.cross_entropy(ms.flatten(0, 1), motion.long().flatten(0, 1))
    want_sd = F.cross_entropy(sd, torch.tensor([1, 1, 0, 0]))
    assert parts["loss_verb"] == pytest.approx(want_verb.item())
    assert parts["loss_noun"] == 0.0  # no noun labelled: nothing, and no NaN
    assert parts["loss_static_dynamic"] == pytest.approx(want_sd.item())
    assert loss.item() == pytest.approx((want_verb + 0.5 * want_ms + 2.0 * want_sd).item())
    with pytest.raises(KeyError, match="'noun' labels"):
        compute_loss(cfg, out, {"verb": batch["verb"], "motion": motion})
    with pytest.raises(KeyError, match="motion"):
        compute_loss(cfg, out, {"verb": batch["verb"], "noun": batch["noun"]})


def test_static_dynamic_clip_is_seeded_and_eval_scores_only_real_clips():
    heads = {"class": 4}
    torch.manual_seed(0)
    model = build_model(tiny_config("static_dynamic", heads, dropout=0.0)).train()
    batch = make_batch(heads)
    torch.manual_seed(5)
    first = model(batch).aux_logits["static_dynamic"]
    torch.manual_seed(5)
    again = model(batch).aux_logits["static_dynamic"]
    assert torch.equal(first, again)
    assert not torch.allclose(first[:B], first[B:])
    model.eval()
    with torch.no_grad():
        assert model(batch).aux_logits["static_dynamic"].shape == (B, 2)


def test_imprinting_starts_as_identity_and_film_touches_only_later_frames():
    heads = {"class": 4}
    torch.manual_seed(0)
    model = build_model(tiny_config("imprinting", heads)).eval()
    frames = make_batch(heads)["frames"]
    with torch.no_grad():
        plain = SparNet.encode_frames(model, frames)[0]
        film = model.encode_frames(frames)[0]
        assert torch.allclose(plain, film, atol=1e-6)
        torch.nn.init.normal_(model.film.out.weight, std=0.5)
        film = model.encode_frames(frames)[0]
    assert torch.allclose(plain[:, 0], film[:, 0], atol=1e-6)
    assert not torch.allclose(plain[:, 1:], film[:, 1:], atol=1e-3)


@pytest.mark.parametrize("temporal", ["centre", "mean"])
def test_flow_temporal_use_of_stacks(temporal):
    heads = {"class": 4}
    torch.manual_seed(0)
    model = build_model(tiny_config("flow", heads, flow_temporal=temporal)).eval()
    batch = make_batch(heads)
    changed = dict(batch, flow=batch["flow"].clone())
    changed["flow"][:, 0] += 1.0  # not the centre stack (T // 2 == 1)
    with torch.no_grad():
        same = torch.allclose(model(batch).logits["class"], model(changed).logits["class"])
    assert same == (temporal == "centre")


def test_cut_trunk_feeds_conv4_x_and_has_no_layer4_group():
    heads = {"class": 4}
    torch.manual_seed(0)
    cfg = tiny_config("sparnet", heads, features_from="conv4_x", ms_tap="conv4_x")
    model = build_model(cfg).train()
    out = model(make_batch(heads))
    assert out.ms.shape == (B, T, 2, 4, 4)
    assert "backbone_layer4" not in model.param_groups()
    assert model.recurrent.cell.gates.in_channels == 256 + 16


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="ms_tap"):
        from_dict(ModelConfig, {"features_from": "conv4_x", "ms_tap": "conv5_x"})
    with pytest.raises(ConfigError, match="num_classes.verb"):
        from_dict(ModelConfig, {"num_classes": {"verb": 1}})
    with pytest.raises(ConfigError, match="did you mean 'sparnet'"):
        build_model(ModelConfig(name="sparnett", pretrained="none"))
    with pytest.raises(ConfigError, match="lsta has its own attention"):
        build_model(tiny_config("lsta", {"class": 4}, cam=True))
    model = build_model(tiny_config("sparnet", {"class": 4}))
    with pytest.raises(ValueError, match="MS head built for 2x2 features"):
        model(make_batch({"class": 4}, size=96))
    with pytest.raises(KeyError, match="use_flow"):
        build_model(tiny_config("flow", {"class": 4}))({"frames": torch.zeros(1, 1, 3, 64, 64)})


def _aten_ops(fn) -> set[str]:
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = set()

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.add(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    with Record():
        fn()
    return seen


@pytest.mark.parametrize("positive_weight", [None, 4.5])
def test_ms_cross_entropy_keeps_the_2d_losses_bits_without_nll_loss2d(positive_weight):
    from fpar.models.losses import ms_cross_entropy

    generator = torch.Generator().manual_seed(3)
    for n, s in ((1, 1), (7, 3), (56, 7), (33, 14)):
        logits = (torch.randn(n, 2, s, s, generator=generator) * 3).requires_grad_()
        target = torch.randint(0, 2, (n, s, s), generator=generator)
        weight = None if positive_weight is None else torch.tensor([1.0, positive_weight])
        before = F.cross_entropy(logits, target, weight=weight)  # the 2-D form
        (grad_before,) = torch.autograd.grad(before, logits)
        now = ms_cross_entropy(logits, target, weight)
        (grad_now,) = torch.autograd.grad(now, logits)
        assert torch.equal(now, before) and torch.equal(grad_now, grad_before)
    # nll_loss2d's CUDA forward sums with atomics; the row form never calls it.
    ops = _aten_ops(lambda: ms_cross_entropy(logits, target, weight).backward())
    assert "nll_loss_forward" in ops and not any("nll_loss2d" in op for op in ops), ops
    assert any("nll_loss2d" in op for op in _aten_ops(
        lambda: F.cross_entropy(logits, target, weight=weight)))
