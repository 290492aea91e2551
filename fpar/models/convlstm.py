"""Convolutional LSTM (Ego-RNN's recurrent cell) and the LSTA variant with attention inside."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvLSTMCell(nn.Module):
    """One ConvLSTM step: the four gates are one convolution of [input, hidden].

    Weights are xavier-normal and biases zero, as in Ego-RNN, so no gate starts saturated;
    ``forget_bias`` > 0 starts the forget gate open instead (sigmoid(1) = 0.73), so the cell
    carries what early frames showed to the last step from the first update on.
    """

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3, forget_bias: float = 0.0):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)
        nn.init.xavier_normal_(self.gates.weight)
        nn.init.zeros_(self.gates.bias)
        with torch.no_grad():
            self.gates.bias[hidden:2 * hidden] = forget_bias

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (N, C, s, s), state ``(h, c)`` -> new ``(h, c)``."""
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def zero_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The zero initial ``(h, c)`` matching the spatial size of ``x``."""
        zeros = x.new_zeros(x.shape[0], self.hidden, *x.shape[-2:])
        return zeros, zeros.clone()


class ConvLSTM(nn.Module):
    """Runs a ConvLSTM over a clip; the clip feature is the average-pooled last cell state."""

    def __init__(self, in_channels: int, hidden: int = 512, kernel: int = 3,
                 forget_bias: float = 0.0):
        super().__init__()
        self.cell = ConvLSTMCell(in_channels, hidden, kernel, forget_bias)
        self.out_features = hidden

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, None]:
        """``feats`` (B, T, C, s, s) -> (clip feature (B, hidden), no attention)."""
        state = self.cell.zero_state(feats[:, 0])
        for t in range(feats.shape[1]):
            state = self.cell(feats[:, t], state)
        return state[1].mean(dim=(2, 3)), None


class LSTA(nn.Module):
    """Long short-term attention, simplified: a recurrent attention map gates the input.

    At each step a one-channel attention memory ``a`` is updated from the input (1x1
    convolution) and the previous hidden state (3x3 convolution), mixed with its previous
    value by a learned gate; its softmax over positions weights the input features before
    the ConvLSTM gates. Compared with the published LSTA, the attention proposal is learned
    instead of taken from ImageNet class activation maps, and the output attention on the
    cell state and the cross-modal coupling are left out.
    """

    def __init__(self, in_channels: int, hidden: int = 512, kernel: int = 3,
                 forget_bias: float = 0.0):
        super().__init__()
        self.cell = ConvLSTMCell(in_channels, hidden, kernel, forget_bias)
        self.from_input = nn.Conv2d(in_channels, 1, 1)
        self.from_hidden = nn.Conv2d(hidden, 1, 3, padding=1)
        self.keep_gate = nn.Conv2d(hidden + 1, 1, 3, padding=1)
        self.out_features = hidden

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats`` (B, T, C, s, s) -> (clip feature (B, hidden), attention (B, T, s, s))."""
        h, c = self.cell.zero_state(feats[:, 0])
        memory = feats.new_zeros(feats.shape[0], 1, *feats.shape[-2:])
        maps = []
        for t in range(feats.shape[1]):
            x = feats[:, t]
            proposal = self.from_input(x) + self.from_hidden(h)
            keep = torch.sigmoid(self.keep_gate(torch.cat([h, memory], dim=1)))
            memory = keep * memory + (1 - keep) * proposal
            att = F.softmax(memory.flatten(1), dim=1).view_as(memory)
            h, c = self.cell(x * att, (h, c))
            maps.append(att[:, 0])
        return c.mean(dim=(2, 3)), torch.stack(maps, dim=1)
