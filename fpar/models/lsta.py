"""LSTA-RGB: attention inside the recurrent cell (see ``convlstm.LSTA`` for what is kept)."""

from __future__ import annotations

from fpar.config import ConfigError
from fpar.models.config import ModelConfig
from fpar.models.registry import register_model
from fpar.models.sparnet import SparNet, option


@register_model("lsta", "LSTA-RGB: ConvLSTM with a recurrent attention map inside the cell")
def build_lsta(cfg: ModelConfig) -> SparNet:
    if cfg.cam:
        raise ConfigError("model.cam: lsta has its own attention; leave cam unset or false")
    return SparNet(cfg, cam=False, ms=option(cfg.ms, False), recurrent="lsta")
