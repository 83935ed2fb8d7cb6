"""pix2pix (Isola et al. 2017): a U-Net generator and a PatchGAN discriminator.

G encodes the input image with stride-2 convolutions down to 2×2 and decodes it with transposed
convolutions, each decoder level concatenated with the encoder level of the same resolution (the
skip connections that carry the input's detail across). Its noise is dropout (p = 0.5) in the
three innermost decoder levels, active while training, as in the paper; in eval mode (sampling,
serving) a translation is deterministic.

D judges (input, image) pairs, concatenated along the channels, patch by patch: a grid of logits,
one per overlapping patch, each averaged into the loss. Weights start N(0, 0.02) as in DCGAN.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gan_engine.nets.d_options import d_normalization
from gan_engine.nets.dcgan import init_dcgan_weights

MAX_CHANNEL_MULTIPLE = 8
DROPOUT_LEVELS, DROPOUT = 3, 0.5


def unet_levels(image_size: int) -> int:
    """Stride-2 levels from ``image_size`` down to 2×2."""
    if image_size not in (8, 16, 32, 64):
        raise ValueError(f"the U-Net needs model.image_size 8, 16, 32 or 64, got {image_size}")
    return round(math.log2(image_size)) - 1


def _channels(width: int, level: int) -> int:
    return width * min(2**level, MAX_CHANNEL_MULTIPLE)


class UNetGenerator(nn.Module):
    """forward(inputs (N, C_in, S, S) in [-1, 1]) -> outputs (N, C_out, S, S) through Tanh."""

    def __init__(self, in_channels: int, out_channels: int, image_size: int, width: int) -> None:
        super().__init__()
        levels = unet_levels(image_size)
        self.in_channels, self.out_channels, self.image_size = in_channels, out_channels, image_size
        self.down = nn.ModuleList()
        previous = in_channels
        for level in range(levels):
            c_out = _channels(width, level)
            layers: list[nn.Module] = [nn.Conv2d(previous, c_out, 4, 2, 1, bias=level == 0)]
            if 0 < level < levels - 1:  # neither the first level nor the bottleneck is normalised
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
            self.down.append(nn.Sequential(*layers))
            previous = c_out
        self.up = nn.ModuleList()
        for level in reversed(range(1, levels)):  # innermost first; its input has no skip yet
            c_in = previous if level == levels - 1 else 2 * _channels(width, level)
            c_out = _channels(width, level - 1)
            layers = [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out)]
            if levels - 1 - level < DROPOUT_LEVELS:
                layers.append(nn.Dropout(DROPOUT))
            layers.append(nn.ReLU())
            self.up.append(nn.Sequential(*layers))
        self.out = nn.Sequential(nn.ConvTranspose2d(2 * width, out_channels, 4, 2, 1), nn.Tanh())
        init_dcgan_weights(self)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        skips = []
        x = inputs
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck feeds the decoder directly
        for block in self.up:
            x = torch.cat([block(x), skips.pop()], dim=1)
        return self.out(x)


class PatchGANDiscriminator(nn.Module):
    """forward(inputs, images) -> patch logits (N, P): one raw score per receptive field.

    Up to three stride-2 convolutions, keeping a map of at least 4×4 patches, then one stride-1
    convolution and the 1-channel logit convolution (the paper's C64-C128-C256-C512 at 256², scaled
    to the image)."""

    def __init__(
        self, in_channels: int, out_channels: int, image_size: int, width: int, d_norm: str
    ) -> None:
        super().__init__()
        strided = max(1, min(3, round(math.log2(image_size)) - 2))
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels + out_channels, width, 4, 2, 1),
            nn.LeakyReLU(0.2),
        ]
        previous = width
        for level in range(1, strided + 1):
            c_out = _channels(width, level)
            stride = 2 if level < strided else 1
            padding = 1 if stride == 2 else "same"
            layers += [
                nn.Conv2d(
                    previous,
                    c_out,
                    4 if stride == 2 else 3,
                    stride,
                    padding,
                    bias=d_norm == "none",
                ),
                d_normalization(d_norm, c_out, images=True),
                nn.LeakyReLU(0.2),
            ]
            previous = c_out
        layers += [nn.Conv2d(previous, 1, 3, 1, "same"), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        init_dcgan_weights(self)

    def forward(self, inputs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([inputs, images], dim=1))
