"""ResNet trunks built from torchvision's definitions, exposing conv3_x / conv4_x / conv5_x.

ImageNet weights are never downloaded: they come from ``ModelConfig.pretrained`` or from the
file torchvision itself would have cached, and the trunk starts from random weights (with a
warning) when neither is there.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torchvision
from torch import nn

from fpar.models.config import ModelConfig

log = logging.getLogger(__name__)

_CONSTRUCTORS = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
}

#: File names torchvision gives the ImageNet weights in the torch hub cache.
HUB_FILES = {
    "resnet18": ("resnet18-f37072fd.pth",),
    "resnet34": ("resnet34-b627a593.pth",),
    "resnet50": ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
}

STATE_DICT = dict[str, torch.Tensor]


def _read_state(path: Path) -> STATE_DICT:
    """Reads a checkpoint, unwrapping ``state_dict`` / ``model`` and a ``module.`` prefix."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a broken file
        raise ValueError(f"model.pretrained: cannot read {path}: {err}") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"model.pretrained: {path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def imagenet_state(cfg: ModelConfig) -> tuple[STATE_DICT | None, str]:
    """Finds the ImageNet state dict for ``cfg.backbone`` as ``cfg.pretrained`` says.

    Returns:
        ``(state, source)``; state is None when the model starts from random weights.

    Raises:
        FileNotFoundError: If ``cfg.pretrained`` is a path that does not exist.
    """
    if cfg.pretrained == "none":
        return None, "random init (pretrained: none)"
    if cfg.pretrained != "auto":
        path = Path(cfg.pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model.pretrained: no file at {path}")
        return _read_state(path), str(path)
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    for name in HUB_FILES[cfg.backbone]:
        if (cache / name).is_file():
            return _read_state(cache / name), str(cache / name)
    log.warning(
        "no ImageNet weights for %s (looked for %s in %s; set model.pretrained to a file): "
        "starting from random weights",
        cfg.backbone, " or ".join(HUB_FILES[cfg.backbone]), cache,
    )
    return None, "random init (no ImageNet file found)"


class ResNetTrunk(nn.Module):
    """A torchvision ResNet without its pooling and fc, returning its stage outputs.

    Sub-module names equal torchvision's, so its state dicts load key for key.

    Args:
        backbone: ``resnet18``, ``resnet34`` or ``resnet50``.
        last_stage: ``conv5_x`` keeps layer4; ``conv4_x`` ends the trunk after layer3.
        in_channels: Channels of the input (3 for RGB, 10 for stacked warp flow).
    """

    def __init__(self, backbone: str, last_stage: str = "conv5_x", in_channels: int = 3):
        super().__init__()
        net = _CONSTRUCTORS[backbone](weights=None)
        self.backbone = backbone
        self.in_channels = in_channels
        self.conv1 = net.conv1
        if in_channels != 3:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1, self.relu, self.maxpool = net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        self.layer4 = net.layer4 if last_stage == "conv5_x" else None
        self.last_stage = last_stage
        expansion = type(net.layer1[0]).expansion
        self.channels = {"conv3_x": 128 * expansion, "conv4_x": 256 * expansion,
                         "conv5_x": 512 * expansion}
        self.out_channels = self.channels[last_stage]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 + bn1 + relu: the "conv1 features" (64 channels, stride 2)."""
        return self.relu(self.bn1(self.conv1(x)))

    def body(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """From conv1 features to ``{"conv3_x", "conv4_x"[, "conv5_x"]}`` features."""
        x = self.layer1(self.maxpool(x))
        out = {"conv3_x": self.layer2(x)}
        out["conv4_x"] = self.layer3(out["conv3_x"])
        if self.layer4 is not None:
            out["conv5_x"] = self.layer4(out["conv4_x"])
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images ``(N, C, H, W)`` -> stage features."""
        return self.body(self.stem(x))

    def early_modules(self) -> list[nn.Module]:
        """Everything up to conv4_x (the "backbone" group)."""
        return [self.conv1, self.bn1, self.layer1, self.layer2, self.layer3]

    def layer4_modules(self) -> list[nn.Module]:
        """conv5_x (the "backbone_layer4" group), empty when the trunk is cut."""
        return [self.layer4] if self.layer4 is not None else []

    def load_imagenet(self, state: STATE_DICT, source: str = "state dict") -> None:
        """Copies torchvision-named weights in; a flow conv1 gets the RGB filters' mean.

        The mean over the three colour channels, repeated over ``in_channels``, is the
        usual cross-modality initialisation of a flow network.

        Raises:
            ValueError: Naming ``source`` and the keys, if a key is missing or misshapen.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise ValueError(f"{source}: missing {len(missing)} trunk keys, e.g. {missing[:3]} "
                             f"(wrong model.backbone?)")
        # Keys the trunk does not use are fine only for parts it drops on purpose (the fc,
        # layer4 of a cut trunk); any other extra key means a deeper network's file.
        dropped = ("fc.",) if self.layer4 is not None else ("fc.", "layer4.")
        extra = [k for k in state if k not in own and not k.startswith(dropped)]
        if extra:
            raise ValueError(f"{source}: {len(extra)} keys the {self.backbone} trunk does not "
                             f"have, e.g. {extra[:3]} (wrong model.backbone?)")
        new = {}
        for key, target in own.items():
            value = state[key]
            if key == "conv1.weight" and self.in_channels != value.shape[1]:
                value = value.mean(dim=1, keepdim=True).repeat(1, self.in_channels, 1, 1)
            if value.shape != target.shape:
                raise ValueError(
                    f"{source}: {key} has shape {tuple(value.shape)}, the trunk needs "
                    f"{tuple(target.shape)} (wrong backbone?)"
                )
            new[key] = value.to(target.dtype)
        self.load_state_dict(new)


def build_trunk(cfg: ModelConfig, state: STATE_DICT | None, source: str,
                in_channels: int = 3) -> ResNetTrunk:
    """Builds ``cfg.backbone`` cut at ``cfg.features_from`` and loads ``state`` if given."""
    trunk = ResNetTrunk(cfg.backbone, cfg.features_from, in_channels)
    if state is not None:
        trunk.load_imagenet(state, source)
        log.info("%s trunk (%d input channels) initialised from %s",
                 cfg.backbone, in_channels, source)
    return trunk
