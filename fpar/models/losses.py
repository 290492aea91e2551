"""The training loss: heads' cross-entropies + alpha * MS loss + the discriminator loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fpar.models.config import ModelConfig
from fpar.models.output import ModelOutput

#: Label value of a segment without that label; such rows add nothing to the loss.
IGNORE = -1


def ms_target(motion: torch.Tensor, s: int, tau: float,
              kind: str = "classification") -> torch.Tensor:
    """Turns stored motion maps into the MS head's per-cell targets.

    Args:
        motion: (B, T, h, w) moving fraction in [0, 1], already cropped / flipped like the
            frames, at the stored map resolution.
        s: Side of the MS prediction.
        tau: A cell is "moving" when its area-averaged fraction is at least ``tau``.
        kind: ``classification`` -> long {0, 1}; ``regression`` -> the fraction itself.

    Returns:
        (B, T, s, s) targets.
    """
    if motion.dim() != 4:
        raise ValueError(f"motion must be (B, T, h, w), got shape {tuple(motion.shape)}")
    b, t, h, w = motion.shape
    frac = F.interpolate(motion.reshape(b * t, 1, h, w).float(), size=(s, s), mode="area")
    frac = frac.view(b, t, s, s)
    if kind == "regression":
        return frac
    return (frac >= tau).long()


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy ignoring unlabelled rows; zero (with a graph) when none is labelled."""
    target = target.to(logits.device).long()
    if not bool((target != IGNORE).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE)


def ms_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                     weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of (N, C, s, s) cell logits against (N, s, s) classes.

    Computed over the cells as rows, (N*s*s, C): on CUDA the 2-D form runs ``nll_loss2d``,
    whose forward sums with atomics (the loss, and with a class weight the gradients, differ
    in the last bits from run to run); the row form reduces in a fixed order. On the CPU
    both give the same bits, loss and gradients.
    """
    log_p = F.log_softmax(logits, dim=1)  # what cross_entropy computes first
    rows = log_p.movedim(1, -1).reshape(-1, logits.shape[1])
    return F.nll_loss(rows, target.reshape(-1), weight=weight)


def _ms_loss(cfg: ModelConfig, ms: torch.Tensor, motion: torch.Tensor) -> tuple[torch.Tensor, dict]:
    s = ms.shape[-1]
    target = ms_target(motion.to(ms.device), s, cfg.ms_tau, cfg.ms_kind)
    if cfg.ms_kind == "classification":
        logits = ms.flatten(0, 1).float()
        flat = target.flatten(0, 1)
        weight = None
        if cfg.ms_positive_weight != 1.0:
            weight = torch.tensor([1.0, cfg.ms_positive_weight], device=logits.device)
        loss = ms_cross_entropy(logits, flat, weight)
        acc = (logits.argmax(dim=1) == flat).float().mean().item()
        return loss, {"ms_acc": acc}
    fn = F.mse_loss if cfg.ms_regression_loss == "mse" else F.l1_loss
    return fn(ms.float(), target), {}


def compute_loss(cfg: ModelConfig, output: ModelOutput,
                 batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss to minimise and its parts.

    ``L = sum over heads of CE(head) + ms_alpha * L_ms + discriminator_weight * L_sd``.
    Rows labelled -1 are left out of a head's cross-entropy.

    Args:
        cfg: The model configuration (MS kind, tau, weights).
        output: What the model returned.
        batch: Labels under the head names (``verb``/``noun`` or ``class``) and, when the
            model has an MS head, ``motion`` (B, T, h, w).

    Returns:
        ``(loss, {"loss", "loss_<head>", "loss_ms", "ms_acc", "loss_static_dynamic"})`` with
        the parts the model has, as floats.

    Raises:
        KeyError: If the batch lacks labels of a head, or motion maps the MS head needs.
    """
    parts: dict[str, float] = {}
    total = None
    for key, logits in output.logits.items():
        if key not in batch:
            raise KeyError(f"the batch has no '{key}' labels for the model's '{key}' head")
        loss = _cross_entropy(logits, batch[key])
        parts[f"loss_{key}"] = loss.item()
        total = loss if total is None else total + loss
    if output.ms is not None:
        if "motion" not in batch:
            raise KeyError("the model has an MS head but the batch has no 'motion' maps")
        loss, extra = _ms_loss(cfg, output.ms, batch["motion"])
        parts["loss_ms"] = loss.item()
        parts.update(extra)
        total = total + cfg.ms_alpha * loss
    if "static_dynamic" in output.aux_logits:
        logits = output.aux_logits["static_dynamic"]
        real = next(iter(output.logits.values())).shape[0]
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        target[:real] = 1
        loss = F.cross_entropy(logits.float(), target)
        parts["loss_static_dynamic"] = loss.item()
        total = total + cfg.discriminator_weight * loss
    parts["loss"] = total.item()
    return total, parts
