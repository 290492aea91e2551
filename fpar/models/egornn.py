"""Ego-RNN (RGB): CAM attention + ConvLSTM, and Ego-RNN with the MS head.

Ego-RNN trains in two stages, which is the trainer's business: stage 1 trains the groups
"convlstm" and "classifier"; stage 2 adds "backbone_layer4" and "cam_fc" (and "ms_head"
for egornn_ms).
"""

from __future__ import annotations

from fpar.models.config import ModelConfig
from fpar.models.registry import register_model
from fpar.models.sparnet import SparNet, option


@register_model("egornn", "Ego-RNN RGB: CAM attention on conv5_x + ConvLSTM (two stages)")
def build_egornn(cfg: ModelConfig) -> SparNet:
    return SparNet(cfg, cam=option(cfg.cam, True), ms=option(cfg.ms, False))


@register_model("egornn_ms", "Ego-RNN + MS head (classification or regression, model.ms_kind)")
def build_egornn_ms(cfg: ModelConfig) -> SparNet:
    return SparNet(cfg, cam=option(cfg.cam, True), ms=option(cfg.ms, True))
