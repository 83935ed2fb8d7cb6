"""DCGAN (Radford et al. 2016): strided (transposed) convolutions, BatchNorm, N(0, 0.02) weights.

With image size S = 4 · 2^k, G projects z to 4×4×(width·2^(k-1)) and doubles the resolution k times,
halving the channels down to ``width`` (then the image channels); D mirrors it: k stride-2
convolutions from ``width`` channels at S/2 to width·2^(k-1) channels at 4×4, whose flattened map is
D's feature vector (the final 4×4 valid conv of the paper is the Linear head that reads it).
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn

from gan_engine.nets.conditioning import call_with_labels, generator_norm
from gan_engine.nets.d_options import d_normalization


def doublings(image_size: int) -> int:
    """k such that image_size == 4 · 2^k, for the sizes the conv architectures support."""
    if image_size not in (8, 16, 32, 64):
        raise ValueError(
            f"model.image_size must be 8, 16, 32 or 64 for conv nets, got {image_size}"
        )
    return round(math.log2(image_size)) - 2


class DCGANGenerator(nn.Sequential):
    """forward(z, labels): ``num_classes`` > 0 makes every BatchNorm class-conditional."""

    def __init__(
        self,
        in_features: int,
        out_channels: int,
        image_size: int,
        width: int,
        num_classes: int = 0,
    ) -> None:
        norm = generator_norm(num_classes)
        channels = [width * 2**i for i in reversed(range(doublings(image_size)))]
        layers: list[nn.Module] = [
            nn.Unflatten(1, (in_features, 1, 1)),
            nn.ConvTranspose2d(in_features, channels[0], 4, 1, 0, bias=False),  # 1×1 -> 4×4
            norm(channels[0]),
            nn.ReLU(),
        ]
        for c_in, c_out in pairwise(channels):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), norm(c_out), nn.ReLU()]
        layers += [nn.ConvTranspose2d(channels[-1], out_channels, 4, 2, 1), nn.Tanh()]
        super().__init__(*layers)
        init_dcgan_weights(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = z
        for layer in self:
            x = call_with_labels(layer, x, labels)
        return x


class DCGANDiscriminatorBody(nn.Sequential):
    def __init__(self, in_channels: int, image_size: int, width: int, d_norm: str) -> None:
        channels = [width * 2**i for i in range(doublings(image_size))]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for c_in, c_out in pairwise(channels):
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=d_norm == "none"),
                d_normalization(d_norm, c_out, images=True),
                nn.LeakyReLU(0.2),
            ]
        layers.append(nn.Flatten())
        super().__init__(*layers)
        self.num_features = channels[-1] * 4 * 4
        init_dcgan_weights(self)


def init_dcgan_weights(net: nn.Module) -> None:
    """Conv and linear weights N(0, 0.02), BatchNorm weights N(1, 0.02), biases 0."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d) and module.affine:
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)
