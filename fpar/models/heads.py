"""Heads: the classifiers, the motion-segmentation (MS) head and CAM attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClassifierHeads(nn.Module):
    """Dropout, then one linear layer per head (``{"verb": 125, "noun": 352}``)."""

    def __init__(self, in_features: int, num_classes: dict[str, int], dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.ModuleDict({k: nn.Linear(in_features, n) for k, n in num_classes.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x`` (N, F) -> logits per head, (N, classes)."""
        x = self.dropout(x)
        return {key: fc(x) for key, fc in self.fc.items()}


class MSHead(nn.Module):
    """Motion segmentation from one frame's features: ReLU, 1x1 conv, flatten, linear.

    The final linear layer maps the whole ``hidden x s x s`` map to every cell's output,
    so its size fixes ``s`` (and hence the input size) at build time.

    Args:
        in_channels: Channels of the tapped trunk stage.
        side: ``s``, the side of the tapped feature map.
        hidden: Channels of the 1x1 convolution (100 in the paper).
        kind: ``classification`` (2 logits per cell) or ``regression`` (1 fraction per cell).
    """

    def __init__(self, in_channels: int, side: int, hidden: int, kind: str):
        super().__init__()
        self.side, self.kind = side, kind
        self.conv = nn.Conv2d(in_channels, hidden, 1)
        outputs = side * side * (2 if kind == "classification" else 1)
        self.fc = nn.Linear(hidden * side * side, outputs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (N, C, s, s) -> (prediction, the 1x1-conv features (N, hidden, s, s)).

        The prediction is (N, 2, s, s) logits or (N, s, s) fractions in [0, 1].
        """
        if x.shape[-2:] != (self.side, self.side):
            raise ValueError(
                f"MS head built for {self.side}x{self.side} features (model.input_size), got "
                f"{x.shape[-2]}x{x.shape[-1]}: frames must be model.input_size square crops"
            )
        feats = self.conv(F.relu(x))
        out = self.fc(feats.flatten(1))
        if self.kind == "classification":
            return out.view(-1, 2, self.side, self.side), feats
        return torch.sigmoid(out).view(-1, self.side, self.side), feats


class CamAttention(nn.Module):
    """Ego-RNN's spatial attention: the class activation map of the frame's top class.

    A frame-level fc (ImageNet's fc when the trunk's weights come with one) scores the
    average-pooled features; the map of the best class, ``w_c . f(x, y) + b_c``, is
    softmax-normalised over positions and multiplies the features.
    """

    def __init__(self, channels: int, classes: int = 1000):
        super().__init__()
        self.fc = nn.Linear(channels, classes)

    def load_fc(self, state: dict[str, torch.Tensor] | None) -> bool:
        """Takes ``fc.weight`` / ``fc.bias`` from an ImageNet state dict if they fit."""
        if state is None or "fc.weight" not in state:
            return False
        if tuple(state["fc.weight"].shape) != tuple(self.fc.weight.shape):
            return False
        self.fc.load_state_dict({"weight": state["fc.weight"], "bias": state["fc.bias"]})
        return True

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats`` (N, C, s, s) -> (attended features, attention (N, s, s))."""
        with torch.no_grad():
            top = self.fc(feats.mean(dim=(2, 3))).argmax(dim=1)
        # The bias is constant over positions and so leaves the softmax unchanged; it is
        # kept so that the map is the class score spread over positions.
        cam = torch.einsum("nc,nchw->nhw", self.fc.weight[top], feats)
        cam = cam + self.fc.bias[top][:, None, None]
        att = F.softmax(cam.flatten(1), dim=1).view_as(cam)
        return feats * att.unsqueeze(1), att
