"""Generator and discriminator networks: one module per architecture family and per D option.

- ``mlp``, ``dcgan``, ``resnet``: the architecture families (G and D's feature-extracting body);
- ``conditioning``: how class labels enter G and D (concat, projection, acgan);
- ``d_options``: spectral norm, minibatch discrimination / stddev, packing, D's normalisation;
- ``unet``: pix2pix's U-Net G and PatchGAN D, for task 'translation';
- ``networks``: G and D as the trainer calls them; ``build``: ModelSpec -> networks.
"""

from gan_engine.nets.build import (
    build_discriminator,
    build_generator,
    build_patch_discriminator,
    build_translator,
)
from gan_engine.nets.networks import Discriminator, DOutput, Generator

__all__ = [
    "DOutput",
    "Discriminator",
    "Generator",
    "build_discriminator",
    "build_generator",
    "build_patch_discriminator",
    "build_translator",
]
