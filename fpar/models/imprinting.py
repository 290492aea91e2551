"""Imprinting the motion: MS features of frame t-1 modulate frame t's conv1 features (FiLM)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fpar.config import ConfigError
from fpar.models.config import ModelConfig
from fpar.models.registry import register_model
from fpar.models.sparnet import SparNet, option


class FiLMGenerator(nn.Module):
    """MS features (N, hidden, H1, W1) upsampled to conv1 size -> (beta, gamma) (N, 64, H1, W1).

    The last convolution starts at zero weights with beta's bias 1 and gamma's bias 0, so the
    model starts as plain SparNet and learns how much motion to imprint.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.out = nn.Conv2d(hidden, 2 * out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        with torch.no_grad():
            self.out.bias[:out_channels].fill_(1.0)
            self.out.bias[out_channels:].zero_()

    def forward(self, ms_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        beta, gamma = self.out(F.relu(self.conv(ms_feats))).chunk(2, dim=1)
        return beta, gamma


class Imprinting(SparNet):
    """SparNet whose frames are encoded in order so that frame t sees frame t-1's motion.

    Frame t's conv1 features F become ``beta * F + gamma`` with (beta, gamma) made from the
    MS head's 1x1-conv features of frame t-1, bilinearly upsampled; frame 0 is unchanged.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, cam=option(cfg.cam, False), ms=True)
        self.film = FiLMGenerator(cfg.ms_hidden, cfg.film_hidden, self.trunk.conv1.out_channels)

    def group_modules(self) -> dict[str, list[nn.Module]]:
        groups = super().group_modules()
        groups["film"] = [self.film]
        return groups

    def encode_frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, preds, previous = [], [], None
        for t in range(frames.shape[1]):
            x = self.trunk.stem(frames[:, t])
            if previous is not None:
                up = F.interpolate(previous, size=x.shape[-2:], mode="bilinear",
                                   align_corners=False)
                beta, gamma = self.film(up)
                x = beta * x + gamma
            stages = self.trunk.body(x)
            pred, previous = self.ms_head(stages[self.cfg.ms_tap])
            feats.append(stages[self.trunk.last_stage])
            preds.append(pred)
        return torch.stack(feats, dim=1), torch.stack(preds, dim=1)


@register_model("imprinting", "Imprinting the motion: previous frame's MS features FiLM conv1")
def build_imprinting(cfg: ModelConfig) -> Imprinting:
    if cfg.ms is False:
        raise ConfigError("model.ms: the imprinting model needs its MS head")
    return Imprinting(cfg)
