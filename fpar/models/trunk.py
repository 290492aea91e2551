"""ResNet trunks built from torchvision's definitions, exposing conv3_x / conv4_x / conv5_x.

ImageNet weights follow torchvision's weights API: ``model.pretrained: auto`` means
``ResNet*_Weights.IMAGENET1K_V1``, read from the torch hub cache
(``$TORCH_HOME/hub/checkpoints``) and downloaded there by torchvision when the file is
missing and the machine is online. Weights that cannot be had stop the run before it
starts (:class:`PretrainedWeightsError`); a model starts from random weights only when the
config says ``pretrained: none``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models import ResNet18_Weights, ResNet34_Weights, ResNet50_Weights, WeightsEnum

from fpar.config import ConfigError
from fpar.models.config import ModelConfig

log = logging.getLogger(__name__)

_CONSTRUCTORS = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
}

#: The ImageNet weights ``pretrained: auto`` stands for, per backbone.
IMAGENET_WEIGHTS: dict[str, WeightsEnum] = {
    "resnet18": ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": ResNet50_Weights.IMAGENET1K_V1,
}

STATE_DICT = dict[str, torch.Tensor]


class PretrainedWeightsError(ConfigError):
    """ImageNet weights the config asks for that cannot be read or obtained."""


def hub_file(backbone: str) -> Path:
    """Where torchvision keeps the ImageNet file of ``backbone`` (the torch hub cache)."""
    url = IMAGENET_WEIGHTS[backbone].url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def download_weights(weights: WeightsEnum) -> None:
    """Has torchvision download ``weights`` into the torch hub cache (hash checked)."""
    weights.get_state_dict(progress=False, check_hash=True)


def _read_state(path: Path) -> STATE_DICT:
    """Reads a checkpoint, unwrapping ``state_dict`` / ``model`` and a ``module.`` prefix."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a broken file
        raise PretrainedWeightsError(f"model.pretrained: cannot read {path}: {err}") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"model.pretrained: {path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def imagenet_file(cfg: ModelConfig,
                  fetch: Callable[[WeightsEnum], None] | None = None) -> Path | None:
    """The weights file ``cfg.pretrained`` names, downloading torchvision's if need be.

    Args:
        cfg: The model config (``pretrained``: ``auto``, ``none`` or a path).
        fetch: Downloads a torchvision weights entry into the hub cache (default
            :func:`download_weights`); called only when ``auto`` finds no cached file.

    Returns:
        The file, or None for ``pretrained: none``.

    Raises:
        PretrainedWeightsError: Naming the file and where to put it, when it is missing
            and cannot be downloaded.
    """
    if cfg.pretrained == "none":
        return None
    if cfg.pretrained != "auto":
        path = Path(cfg.pretrained).expanduser()
        if not path.is_file():
            raise PretrainedWeightsError(f"model.pretrained: no file at {path}")
        return path
    path = hub_file(cfg.backbone)
    if path.is_file():
        return path
    weights = IMAGENET_WEIGHTS[cfg.backbone]
    reason = "the download left no file there"
    try:
        (fetch or download_weights)(weights)
    except Exception as err:  # offline (URLError), timeouts, a bad hash, a full disk
        reason = f"the download failed: {type(err).__name__}: {err}"
    if not path.is_file():
        raise PretrainedWeightsError(
            f"model.pretrained: auto needs torchvision's {type(weights).__name__}."
            f"{weights.name} for model.backbone={cfg.backbone} at {path} ({reason}). Put "
            f"{weights.url} there (the torch hub cache; $TORCH_HOME moves it), set "
            "model.pretrained to a state-dict file, or model.pretrained=none to start from "
            "random weights")
    return path


def imagenet_state(cfg: ModelConfig) -> tuple[STATE_DICT | None, str]:
    """The ImageNet state dict for ``cfg.backbone`` as ``cfg.pretrained`` says.

    Returns:
        ``(state, source)``; state is None only for ``pretrained: none``.

    Raises:
        PretrainedWeightsError: See :func:`imagenet_file`; also for an unreadable file.
    """
    path = imagenet_file(cfg)
    if path is None:
        return None, "random init (pretrained: none)"
    return _read_state(path), str(path)


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
            PretrainedWeightsError: Naming ``source`` and the keys, if a key is missing or
                misshapen.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise PretrainedWeightsError(f"{source}: missing {len(missing)} trunk keys, e.g. "
                                         f"{missing[:3]} (wrong model.backbone?)")
        # Keys the trunk does not use are fine only for parts it drops on purpose (the fc,
        # layer4 of a cut trunk); any other extra key means a deeper network's file.
        dropped = ("fc.",) if self.layer4 is not None else ("fc.", "layer4.")
        extra = [k for k in state if k not in own and not k.startswith(dropped)]
        if extra:
            raise PretrainedWeightsError(f"{source}: {len(extra)} keys the {self.backbone} trunk "
                                         f"does not have, e.g. {extra[:3]} (wrong model.backbone?)")
        new = {}
        for key, target in own.items():
            value = state[key]
            if key == "conv1.weight" and self.in_channels != value.shape[1]:
                value = value.mean(dim=1, keepdim=True).repeat(1, self.in_channels, 1, 1)
            if value.shape != target.shape:
                raise PretrainedWeightsError(
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
