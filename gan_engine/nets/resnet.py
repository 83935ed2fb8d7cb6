"""SNGAN-style residual G and D (Miyato et al. 2018, after Gulrajani et al. 2017).

Channels follow the DCGAN layout (see dcgan.py): G from width·2^(k-1) at 4×4 halving to ``width``,
D from ``width`` doubling to width·2^(k-1) at 4×4, for image size 4 · 2^k. D then sums its last
feature maps over space (global sum pooling) into the feature vector read by a Linear head.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from gan_engine.nets.conditioning import call_with_labels, generator_norm
from gan_engine.nets.d_options import d_normalization
from gan_engine.nets.dcgan import doublings


def _conv(c_in: int, c_out: int, kernel: int, gain: float) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, kernel, 1, kernel // 2)
    nn.init.xavier_uniform_(conv.weight, gain)
    nn.init.zeros_(conv.bias)
    return conv


class GeneratorBlock(nn.Module):
    """BN-ReLU-upsample-conv3-BN-ReLU-conv3, plus upsample-conv1 shortcut (BN: ``norm``'s)."""

    def __init__(self, c_in: int, c_out: int, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.norm1, self.conv1 = norm(c_in), _conv(c_in, c_out, 3, math.sqrt(2))
        self.norm2, self.conv2 = norm(c_out), _conv(c_out, c_out, 3, math.sqrt(2))
        self.shortcut = _conv(c_in, c_out, 1, 1.0)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(call_with_labels(self.norm1, x, labels))
        h = self.conv1(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.conv2(F.relu(call_with_labels(self.norm2, h, labels)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class DiscriminatorBlock(nn.Module):
    """(norm)-ReLU-conv3-(norm)-ReLU-conv3-avgpool, plus avgpool-conv1 shortcut.

    The first ("optimized") block reads the image itself: it starts with the conv, not a ReLU, and
    has no normalisation (like DCGAN's D, whose first layer is never normalised).
    """

    def __init__(self, c_in: int, c_out: int, *, first: bool, d_norm: str) -> None:
        super().__init__()
        self.first = first
        norm = "none" if first else d_norm
        self.norm1 = d_normalization(norm, c_in, images=True)
        self.conv1 = _conv(c_in, c_out, 3, math.sqrt(2))
        self.norm2 = d_normalization(norm, c_out, images=True)
        self.conv2 = _conv(c_out, c_out, 3, math.sqrt(2))
        self.shortcut = _conv(c_in, c_out, 1, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(self.norm1(x))
        h = self.conv2(F.relu(self.norm2(self.conv1(h))))
        return F.avg_pool2d(h, 2) + self.shortcut(F.avg_pool2d(x, 2))


class ResNetGenerator(nn.Module):
    """forward(z, labels): ``num_classes`` > 0 makes every BatchNorm class-conditional."""

    def __init__(
        self,
        in_features: int,
        out_channels: int,
        image_size: int,
        width: int,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        norm = generator_norm(num_classes)
        channels = [width * 2**i for i in reversed(range(doublings(image_size)))] + [width]
        self.start_channels = channels[0]
        self.project = nn.Linear(in_features, channels[0] * 4 * 4)
        nn.init.xavier_uniform_(self.project.weight)
        self.blocks = nn.Sequential(
            *(GeneratorBlock(c_in, c_out, norm) for c_in, c_out in pairwise(channels))
        )
        self.to_image = nn.Sequential(
            norm(width), nn.ReLU(), _conv(width, out_channels, 3, 1.0), nn.Tanh()
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.project(z).view(z.shape[0], self.start_channels, 4, 4)
        for block in self.blocks:
            h = block(h, labels)
        for layer in self.to_image:
            h = call_with_labels(layer, h, labels)
        return h


class ResNetDiscriminatorBody(nn.Module):
    def __init__(self, in_channels: int, image_size: int, width: int, d_norm: str) -> None:
        super().__init__()
        channels = [width * 2**i for i in range(doublings(image_size))]
        blocks = [DiscriminatorBlock(in_channels, channels[0], first=True, d_norm=d_norm)]
        blocks += [
            DiscriminatorBlock(c_in, c_out, first=False, d_norm=d_norm)
            for c_in, c_out in pairwise(channels)
        ]
        self.blocks = nn.Sequential(*blocks)
        self.num_features = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.blocks(x)).sum(dim=(2, 3))
