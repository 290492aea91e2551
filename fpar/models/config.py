"""The model configuration: one dataclass shared by every model in the registry.

Each field applies to the models that use it and is ignored by the others. Fields left
at ``None`` take the model's own default (for example ``cam`` is off in SparNet and on in
Ego-RNN), so a YAML file only names what differs from the published system.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

#: Feature stages of a ResNet trunk, in depth order, with their stride w.r.t. the input.
STAGE_STRIDES: dict[str, int] = {"conv3_x": 8, "conv4_x": 16, "conv5_x": 32}

Stage = Literal["conv3_x", "conv4_x", "conv5_x"]


@dataclasses.dataclass
class ModelConfig:
    """What to build and how the losses are weighted.

    Attributes:
        name: Registry name (see ``fpar models``).
        num_classes: Classifier heads, ``{"verb": 125, "noun": 352}`` on EPIC-55 or
            ``{"class": 61}`` on GTEA-61; one linear head per key, logits under that key.
        backbone: ResNet depth of the RGB (and flow) trunk.
        pretrained: ImageNet weights: ``"auto"`` is torchvision's ``IMAGENET1K_V1`` entry,
            read from the torch hub cache (``$TORCH_HOME/hub/checkpoints``) or downloaded
            there when online, and an error before training when neither works;
            ``"none"`` starts from random weights; anything else is the path of a state
            dict with torchvision's key names.
        input_size: Side of the square crops fed to the model; fixes the MS head's size.
        features_from: Trunk stage whose output feeds the action block. ``"conv4_x"`` cuts
            the trunk after layer3 (cheaper; used for CPU calibration runs).
        convlstm_hidden: Channels of the ConvLSTM hidden and cell state.
        convlstm_kernel: Side of the ConvLSTM gate convolutions.
        convlstm_forget_bias: Initial bias of the ConvLSTM forget gate (0 as in Ego-RNN;
            1 starts it open).
        dropout: Dropout before every classifier.
        cam: Class-activation-map attention before the recurrent cell; None = model default.
        ms: Motion-segmentation head on; None = model default.
        ms_tap: Trunk stage the MS head reads (s = 28 / 14 / 7 at 224 input); None (the
            default) = the trunk's last stage, ``features_from``.
        ms_kind: ``"classification"`` (per-cell moving / static, cross-entropy) or
            ``"regression"`` (per-cell moving fraction, sigmoid output).
        ms_regression_loss: Loss of the regression variant.
        ms_alpha: Weight of the MS loss.
        ms_tau: A cell is "moving" when its moving fraction is at least ``ms_tau``.
        ms_positive_weight: Weight of the moving cells in the classification MS loss (1 =
            plain cross-entropy, the paper's). Moving cells are often a few percent of a
            frame (small objects, coarse maps); unweighted, the head can settle on
            "nothing moves" and teach the trunk nothing.
        ms_hidden: Channels of the MS head's 1x1 convolution.
        film_hidden: Channels of the FiLM generator of the imprinting model.
        discriminator_weight: Weight of the static-dynamic discriminator loss.
        discriminator_hidden: Hidden units of the static-dynamic discriminator.
        flow_channels: Input channels of the flow trunk (5 stacked x/y pairs = 10).
        flow_temporal: How the flow nets use the T flow stacks of a clip: ``"centre"``
            takes the stack at index T // 2 (Ego-RNN's choice), ``"mean"`` runs every
            stack and averages the features.
    """

    name: str = "sparnet"
    num_classes: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"verb": 125, "noun": 352}
    )
    backbone: Literal["resnet18", "resnet34", "resnet50"] = "resnet34"
    pretrained: str = "auto"
    input_size: int = 224
    features_from: Literal["conv4_x", "conv5_x"] = "conv5_x"
    convlstm_hidden: int = 512
    convlstm_kernel: int = 3
    convlstm_forget_bias: float = 0.0
    dropout: float = 0.7
    cam: bool | None = None
    ms: bool | None = None
    ms_tap: Stage | None = None
    ms_kind: Literal["classification", "regression"] = "classification"
    ms_regression_loss: Literal["mse", "l1"] = "mse"
    ms_alpha: float = 1.0
    ms_tau: float = 0.5
    ms_positive_weight: float = 1.0
    ms_hidden: int = 100
    film_hidden: int = 32
    discriminator_weight: float = 1.0
    discriminator_hidden: int = 128
    flow_channels: int = 10
    flow_temporal: Literal["centre", "mean"] = "centre"

    def __post_init__(self) -> None:
        if not self.num_classes:
            raise ValueError("num_classes: at least one classifier head is needed")
        for key, count in self.num_classes.items():
            if not isinstance(count, int) or count < 2:
                raise ValueError(f"num_classes.{key}: expected an int >= 2, got {count!r}")
        if self.input_size < 32:
            raise ValueError(f"input_size: {self.input_size} is below the trunk's stride (32)")
        for key in ("convlstm_hidden", "ms_hidden", "film_hidden", "discriminator_hidden",
                    "flow_channels"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be positive, got {getattr(self, key)}")
        if self.convlstm_kernel < 1 or self.convlstm_kernel % 2 == 0:
            raise ValueError(f"convlstm_kernel: must be odd, got {self.convlstm_kernel}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.ms_tau <= 1.0:
            raise ValueError(f"ms_tau: must be in (0, 1], got {self.ms_tau}")
        if not self.ms_positive_weight > 0:
            raise ValueError(f"ms_positive_weight: must be > 0, got {self.ms_positive_weight}")
        if self.ms_alpha < 0 or self.discriminator_weight < 0:
            raise ValueError("ms_alpha and discriminator_weight must be >= 0")
        if self.ms_tap is None:
            self.ms_tap = self.features_from
        if STAGE_STRIDES[self.ms_tap] > STAGE_STRIDES[self.features_from]:
            raise ValueError(
                f"ms_tap: {self.ms_tap} lies beyond the trunk, which ends at {self.features_from}"
            )


def stage_size(input_size: int, stage: str) -> int:
    """Side of a stage's feature map for a square input (every stride-2 layer rounds up)."""
    side = input_size
    for _ in range(STAGE_STRIDES[stage].bit_length() - 1):
        side = (side + 1) // 2
    return side
