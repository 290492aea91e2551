"""The one result type every model returns, and the base class holding parameter groups."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn


@dataclasses.dataclass
class ModelOutput:
    """What a model's forward pass returns.

    Attributes:
        logits: Class scores per head, ``{"verb": (B, 125), "noun": (B, 352)}`` or
            ``{"class": (B, 61)}`` (keys are those of ``ModelConfig.num_classes``).
        ms: Motion-segmentation prediction for every frame, or None without an MS head:
            classification ``(B, T, 2, s, s)`` logits (static, moving); regression
            ``(B, T, s, s)`` moving fractions in [0, 1].
        attention: Spatial attention applied before the recurrent cell, ``(B, T, s, s)``
            (CAM or LSTA models), else None.
        aux_logits: Extra self-supervised heads. ``"static_dynamic"``: ``(R, 2)`` where the
            first B rows are the real clips (target 1 = dynamic) and any further rows are
            clips of one repeated frame (target 0 = static).
    """

    logits: dict[str, torch.Tensor]
    ms: torch.Tensor | None = None
    attention: torch.Tensor | None = None
    aux_logits: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


class ActionModel(nn.Module):
    """Base class: subclasses list their parameter groups as modules in ``group_modules``."""

    def group_modules(self) -> dict[str, list[nn.Module]]:
        """Returns group name -> modules whose parameters form that group."""
        raise NotImplementedError

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by group, for per-group learning rates and staged training.

        Group names (a model has the subset it uses; every parameter is in exactly one):

        - ``backbone``: the RGB trunk up to conv4_x (conv1, bn1, layer1-3).
        - ``backbone_layer4``: the trunk's conv5_x (layer4); Ego-RNN unfreezes it in stage 2.
        - ``cam_fc``: the frame-level fc whose weights make the class activation map.
        - ``convlstm``: the recurrent cell (LSTA's attention memory included).
        - ``classifier``: the linear head(s) after dropout (two-stream: the joint head).
        - ``ms_head``: the motion-segmentation head.
        - ``flow``: the whole warp-flow trunk (flow and two-stream models).
        - ``film``: the imprinting model's FiLM generator.
        - ``discriminator``: the static-dynamic discriminator.

        Raises:
            RuntimeError: If a parameter is in no group or in two (a model bug).
        """
        groups: dict[str, list[nn.Parameter]] = {}
        seen: set[int] = set()
        for name, modules in self.group_modules().items():
            params = [p for m in modules for p in m.parameters()]
            for p in params:
                if id(p) in seen:
                    raise RuntimeError(f"{type(self).__name__}: a parameter is in two groups")
                seen.add(id(p))
            if params:
                groups[name] = params
        missing = [n for n, p in self.named_parameters() if id(p) not in seen]
        if missing:
            raise RuntimeError(f"{type(self).__name__}: parameters in no group: {missing[:5]}")
        return groups
