"""Goodfellow-style fully connected G and D, for 2-D points and small (flattened) images."""

from __future__ import annotations

import math

import torch
from torch import nn

from gan_engine.nets.d_options import d_normalization


class MLPGenerator(nn.Module):
    """``hidden_layers`` × (Linear, ReLU), then Linear to the sample; Tanh for images only."""

    def __init__(
        self, in_features: int, sample_shape: tuple[int, ...], width: int, hidden_layers: int
    ) -> None:
        super().__init__()
        self.sample_shape = sample_shape
        layers: list[nn.Module] = []
        for i in range(hidden_layers):
            layers += [nn.Linear(in_features if i == 0 else width, width), nn.ReLU()]
        layers.append(nn.Linear(width, math.prod(sample_shape)))
        if len(sample_shape) > 1:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.sample_shape)


class MLPDiscriminatorBody(nn.Sequential):
    """``hidden_layers`` × (Linear, norm, LeakyReLU 0.2) on flat input; no norm on the first."""

    def __init__(self, in_features: int, width: int, hidden_layers: int, d_norm: str) -> None:
        layers: list[nn.Module] = [nn.Linear(in_features, width), nn.LeakyReLU(0.2)]
        for _ in range(hidden_layers - 1):
            layers += [
                nn.Linear(width, width),
                d_normalization(d_norm, width, images=False),
                nn.LeakyReLU(0.2),
            ]
        super().__init__(*layers)
        self.num_features = width
