"""Static-dynamic discriminator: tell the real clip from one frame repeated T times."""

from __future__ import annotations

import torch
from torch import nn

from fpar.models.config import ModelConfig
from fpar.models.registry import register_model
from fpar.models.sparnet import SparNet, option


class StaticDynamic(SparNet):
    """SparNet (MS head off by default) plus a binary head after the ConvLSTM.

    In training mode the static clip repeats, for each clip, one frame drawn with torch's
    RNG; the trunk works frame by frame, so the static clip's features are that frame's
    features repeated and only the recurrent cell runs again. ``aux_logits
    ["static_dynamic"]`` holds (2B, 2) logits, real clips first (target 1), then static
    clips (target 0); in eval mode only the B real clips.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, cam=option(cfg.cam, False), ms=option(cfg.ms, False))
        self.discriminator = nn.Sequential(
            nn.Linear(self.out_features, cfg.discriminator_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.discriminator_hidden, 2),
        )

    def group_modules(self) -> dict[str, list[nn.Module]]:
        groups = super().group_modules()
        groups["discriminator"] = [self.discriminator]
        return groups

    def auxiliary(self, clip: torch.Tensor, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training:
            b, t = feats.shape[:2]
            pick = torch.randint(t, (b,), device=feats.device)
            still = feats[torch.arange(b, device=feats.device), pick]
            static_clip, _ = self.recurrent(still.unsqueeze(1).expand_as(feats))
            clip = torch.cat([clip, static_clip], dim=0)
        return {"static_dynamic": self.discriminator(clip)}


@register_model("static_dynamic", "SparNet trunk + ConvLSTM with a static-vs-dynamic clip "
                "discriminator")
def build_static_dynamic(cfg: ModelConfig) -> StaticDynamic:
    return StaticDynamic(cfg)
