"""Two-stream (joint): Ego-RNN RGB features and flow features concatenated -> linear."""

from __future__ import annotations

import torch
from torch import nn

from fpar.models.config import ModelConfig
from fpar.models.flow import FlowEncoder
from fpar.models.heads import ClassifierHeads
from fpar.models.output import ActionModel, ModelOutput
from fpar.models.registry import register_model
from fpar.models.sparnet import SparNet, option


class TwoStream(ActionModel):
    """RGB stream (Ego-RNN, CAM + ConvLSTM) and flow stream, one joint classifier."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.rgb = SparNet(cfg, cam=option(cfg.cam, True), ms=option(cfg.ms, False),
                           classify=False)
        self.flow = FlowEncoder(cfg)
        self.heads = ClassifierHeads(self.rgb.out_features + self.flow.out_features,
                                     cfg.num_classes, cfg.dropout)

    def group_modules(self) -> dict[str, list[nn.Module]]:
        groups = self.rgb.group_modules()
        groups["flow"] = [self.flow]
        groups["classifier"] = [self.heads]
        return groups

    def forward(self, batch: dict) -> ModelOutput:
        """Needs ``batch["frames"]`` and ``batch["flow"]``."""
        rgb, out, _ = self.rgb.clip_features(batch)
        out.logits = self.heads(torch.cat([rgb, self.flow(batch)], dim=1))
        return out


@register_model("two_stream", "Two-stream (joint): Ego-RNN RGB + flow ResNet features -> linear")
def build_two_stream(cfg: ModelConfig) -> TwoStream:
    return TwoStream(cfg)
