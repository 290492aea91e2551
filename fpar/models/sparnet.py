"""SparNet and its relatives: ResNet trunk -> (attention) -> recurrent cell -> heads.

One class covers SparNet, the baseline (no MS head), SparNet + CAM, Ego-RNN, LSTA and, by
subclassing, the imprinting and static-dynamic models: they differ in which parts are on.
"""

from __future__ import annotations

import torch
from torch import nn

from fpar.models.config import ModelConfig, stage_size
from fpar.models.convlstm import LSTA, ConvLSTM
from fpar.models.heads import CamAttention, ClassifierHeads, MSHead
from fpar.models.output import ActionModel, ModelOutput
from fpar.models.registry import register_model
from fpar.models.trunk import build_trunk, imagenet_state


def option(value: bool | None, default: bool) -> bool:
    """A config switch where None means the model's own default."""
    return default if value is None else value


def clip_frames(batch: dict, key: str = "frames") -> torch.Tensor:
    """Returns ``batch[key]`` checked to be (B, T, C, H, W)."""
    if key not in batch:
        raise KeyError(f"the batch has no '{key}' (keys: {sorted(batch)})")
    x = batch[key]
    if x.dim() != 5:
        raise ValueError(f"batch['{key}'] must be (B, T, C, H, W), got shape {tuple(x.shape)}")
    return x


class SparNet(ActionModel):
    """Trunk on every frame, optional CAM attention, ConvLSTM (or LSTA), dropout, heads.

    Args:
        cfg: The model configuration.
        cam: CAM attention on the trunk's last features before the recurrent cell.
        ms: Motion-segmentation head on every frame at ``cfg.ms_tap``.
        recurrent: ``convlstm`` or ``lsta``.
        classify: Build the classifier heads (off when another model owns the head).
    """

    def __init__(self, cfg: ModelConfig, *, cam: bool, ms: bool, recurrent: str = "convlstm",
                 classify: bool = True):
        super().__init__()
        self.cfg = cfg
        state, source = imagenet_state(cfg)
        self.trunk = build_trunk(cfg, state, source)
        channels = self.trunk.out_channels
        self.cam = None
        if cam:
            self.cam = CamAttention(channels)
            self.cam.load_fc(state)
        cell = {"convlstm": ConvLSTM, "lsta": LSTA}[recurrent]
        self.recurrent = cell(channels, cfg.convlstm_hidden, cfg.convlstm_kernel,
                              cfg.convlstm_forget_bias)
        self.out_features = self.recurrent.out_features
        self.heads = ClassifierHeads(self.out_features, cfg.num_classes, cfg.dropout) \
            if classify else None
        self.ms_head = None
        if ms:
            side = stage_size(cfg.input_size, cfg.ms_tap)
            self.ms_head = MSHead(self.trunk.channels[cfg.ms_tap], side, cfg.ms_hidden,
                                  cfg.ms_kind)

    def group_modules(self) -> dict[str, list[nn.Module]]:
        groups = {
            "backbone": self.trunk.early_modules(),
            "backbone_layer4": self.trunk.layer4_modules(),
            "cam_fc": [self.cam] if self.cam is not None else [],
            "convlstm": [self.recurrent],
            "ms_head": [self.ms_head] if self.ms_head is not None else [],
        }
        if self.heads is not None:
            groups["classifier"] = [self.heads]
        return groups

    def encode_frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frames (B, T, 3, H, W) -> (last-stage features (B, T, C, s, s), MS prediction)."""
        b, t = frames.shape[:2]
        stages = self.trunk(frames.flatten(0, 1))
        feats = stages[self.trunk.last_stage]
        ms = None
        if self.ms_head is not None:
            ms, _ = self.ms_head(stages[self.cfg.ms_tap])
            ms = ms.unflatten(0, (b, t))
        return feats.unflatten(0, (b, t)), ms

    def attend(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Applies CAM attention frame by frame when it is on."""
        if self.cam is None:
            return feats, None
        b, t = feats.shape[:2]
        out, att = self.cam(feats.flatten(0, 1))
        return out.unflatten(0, (b, t)), att.unflatten(0, (b, t))

    def clip_features(self, batch: dict) -> tuple[torch.Tensor, ModelOutput, torch.Tensor]:
        """Runs everything but the classifier.

        Returns:
            (clip feature (B, F), an output holding ms / attention, the attended per-frame
            features (B, T, C, s, s)).
        """
        feats, ms = self.encode_frames(clip_frames(batch))
        feats, att = self.attend(feats)
        clip, cell_att = self.recurrent(feats)
        return clip, ModelOutput({}, ms, att if cell_att is None else cell_att), feats

    def auxiliary(self, clip: torch.Tensor, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra self-supervised heads (none here; see the static-dynamic model)."""
        return {}

    def forward(self, batch: dict) -> ModelOutput:
        """``batch["frames"]`` (B, T, 3, H, W) -> ``ModelOutput``."""
        clip, out, feats = self.clip_features(batch)
        out.logits = self.heads(clip)
        out.aux_logits = self.auxiliary(clip, feats)
        return out


@register_model("sparnet", "SparNet: ResNet + ConvLSTM, self-supervised motion-segmentation head")
def build_sparnet(cfg: ModelConfig) -> SparNet:
    return SparNet(cfg, cam=option(cfg.cam, False), ms=option(cfg.ms, True))


@register_model("baseline", "SparNet without the MS head: ResNet + ConvLSTM + classifier")
def build_baseline(cfg: ModelConfig) -> SparNet:
    return SparNet(cfg, cam=option(cfg.cam, False), ms=option(cfg.ms, False))


@register_model("sparnet_cam", "SparNet with CAM spatial attention before the ConvLSTM")
def build_sparnet_cam(cfg: ModelConfig) -> SparNet:
    return SparNet(cfg, cam=option(cfg.cam, True), ms=option(cfg.ms, True))
