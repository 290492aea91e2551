"""The warp-flow stream: a ResNet whose conv1 reads 5 stacked x/y flow pairs."""

from __future__ import annotations

import torch
from torch import nn

from fpar.config import ConfigError
from fpar.models.config import ModelConfig
from fpar.models.heads import ClassifierHeads
from fpar.models.output import ActionModel, ModelOutput
from fpar.models.registry import register_model
from fpar.models.sparnet import clip_frames
from fpar.models.trunk import build_trunk, imagenet_state


class FlowEncoder(nn.Module):
    """Flow trunk + average pooling -> one feature vector per clip.

    conv1 takes ``cfg.flow_channels`` channels and starts from the mean over RGB of the
    ImageNet conv1 filters. ``batch["flow"]`` is (B, T, 10, H, W): one stack per sampled
    frame. ``cfg.flow_temporal == "centre"`` uses the stack at T // 2, as Ego-RNN's flow
    stream does; ``"mean"`` encodes every stack and averages the features over T.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        state, source = imagenet_state(cfg)
        self.trunk = build_trunk(cfg, state, source, in_channels=cfg.flow_channels)
        self.temporal = cfg.flow_temporal
        self.out_features = self.trunk.out_channels

    def forward(self, batch: dict) -> torch.Tensor:
        """Returns the clip's flow feature (B, C)."""
        if "flow" not in batch:
            raise KeyError("this model needs batch['flow'] (build shards with flow and set "
                           "data.use_flow: true)")
        flow = clip_frames(batch, "flow")
        if flow.shape[2] != self.trunk.in_channels:
            raise ValueError(f"batch['flow'] has {flow.shape[2]} channels, the flow trunk "
                             f"takes {self.trunk.in_channels} (model.flow_channels)")
        if self.temporal == "centre":
            return self._encode(flow[:, flow.shape[1] // 2])
        b, t = flow.shape[:2]
        return self._encode(flow.flatten(0, 1)).unflatten(0, (b, t)).mean(dim=1)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)[self.trunk.last_stage].mean(dim=(2, 3))


class FlowNet(ActionModel):
    """Flow ResNet: flow encoder, dropout, linear heads."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.flow = FlowEncoder(cfg)
        self.heads = ClassifierHeads(self.flow.out_features, cfg.num_classes, cfg.dropout)

    def group_modules(self) -> dict[str, list[nn.Module]]:
        return {"flow": [self.flow], "classifier": [self.heads]}

    def forward(self, batch: dict) -> ModelOutput:
        """``batch["flow"]`` (B, T, 10, H, W) -> ``ModelOutput`` (logits only)."""
        return ModelOutput(self.heads(self.flow(batch)))


@register_model("flow", "Flow ResNet: 10-channel warp-flow stacks, conv1 from averaged RGB filters")
def build_flow(cfg: ModelConfig) -> FlowNet:
    if cfg.cam or cfg.ms:
        raise ConfigError("model.cam / model.ms: the flow model has neither; leave them unset")
    return FlowNet(cfg)
