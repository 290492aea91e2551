"""TSN: a 2D CNN on every frame, average consensus over frames (the EPIC baseline)."""

from __future__ import annotations

from torch import nn

from fpar.config import ConfigError
from fpar.models.config import ModelConfig
from fpar.models.heads import ClassifierHeads
from fpar.models.output import ActionModel, ModelOutput
from fpar.models.registry import register_model
from fpar.models.sparnet import clip_frames
from fpar.models.trunk import build_trunk, imagenet_state


class TSN(ActionModel):
    """Trunk + average pooling + dropout + linear heads per frame; logits averaged over T."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        state, source = imagenet_state(cfg)
        self.trunk = build_trunk(cfg, state, source)
        self.heads = ClassifierHeads(self.trunk.out_channels, cfg.num_classes, cfg.dropout)

    def group_modules(self) -> dict[str, list[nn.Module]]:
        return {"backbone": self.trunk.early_modules(),
                "backbone_layer4": self.trunk.layer4_modules(),
                "classifier": [self.heads]}

    def forward(self, batch: dict) -> ModelOutput:
        """``batch["frames"]`` (B, T, 3, H, W) -> consensus logits."""
        frames = clip_frames(batch)
        b, t = frames.shape[:2]
        feats = self.trunk(frames.flatten(0, 1))[self.trunk.last_stage].mean(dim=(2, 3))
        logits = self.heads(feats)
        return ModelOutput({k: v.unflatten(0, (b, t)).mean(dim=1) for k, v in logits.items()})


@register_model("tsn", "TSN: per-frame ResNet + fc, average consensus over frames")
def build_tsn(cfg: ModelConfig) -> TSN:
    if cfg.cam or cfg.ms:
        raise ConfigError("model.cam / model.ms: tsn has neither; leave them unset")
    return TSN(cfg)
