"""Paired data for task 'translation': inputs derived from targets, and the photo crops.

The paired builtins are derived on the fly from images the engine already has, after the targets
are fitted to the model's size, so an input always lines up with its target pixel for pixel:

- ``edges``: a Sobel edge map of each image (white lines on black), as in edges2shoes;
- ``superres-x4``: each image downsampled 4x (area averaging) and upsampled back (bicubic), so
  the input is the bicubic baseline itself and G learns the residual detail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from gan_engine.data import Dataset
from gan_engine.data.fit import bicubic, fit_images, fit_inputs

EDGE_THRESHOLD = 0.2  # of each image's strongest gradient: weaker gradients are not edges
SUPERRES_FACTOR = 4
PHOTO_CROP, PHOTO_STRIDE = 64, 32
PHOTO_TEST_FRACTION = 0.2  # the right-most fifth of each photograph: crops that never train
_CHUNK = 1024
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def edge_map(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, 1, H, W): 255 where the Sobel gradient magnitude of the
    grey image exceeds EDGE_THRESHOLD of the image's largest, 0 elsewhere."""
    kernels = torch.stack([_SOBEL_X, _SOBEL_X.T])[:, None]  # (2, 1, 3, 3): d/dx, d/dy
    chunks = []
    for chunk in images.split(_CHUNK):
        grey = chunk.float().mean(1, keepdim=True) / 255.0
        gradient = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)
        magnitude = gradient.square().sum(1, keepdim=True).sqrt()
        strongest = magnitude.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
        chunks.append((magnitude > EDGE_THRESHOLD * strongest).to(torch.uint8) * 255)
    return torch.cat(chunks)


def downsampled_x4(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> the same size, after a 4x area downsampling and bicubic upsampling."""
    height, width = images.shape[-2:]
    small = [
        F.interpolate(chunk.float(), scale_factor=1 / SUPERRES_FACTOR, mode="area")
        .round_()
        .to(torch.uint8)
        for chunk in images.split(_CHUNK)
    ]
    return bicubic(torch.cat(small), (height, width))


DERIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "edges": edge_map,
    "superres-x4": downsampled_x4,
}


def paired_fitted(dataset: Dataset, image_size: int) -> Dataset:
    """A paired dataset's targets fitted to ``image_size`` (see ``fit_images``) and its inputs
    lined up with them: derived from the fitted targets, or given inputs brought to the
    targets' stored size (bicubic) and then fitted the same way."""
    height, width = dataset.data.shape[-2:]
    targets = fit_images(dataset.data, image_size)
    fitted_from = None if (height, width) == (image_size, image_size) else (int(height), int(width))
    if dataset.derive_inputs is not None:
        inputs = DERIVATIONS[dataset.derive_inputs](targets)
    else:
        assert dataset.inputs is not None
        inputs = fit_inputs(dataset.inputs, (int(height), int(width)), image_size)
    return replace(dataset, data=targets, inputs=inputs, fitted_from=fitted_from)


def with_derived_inputs(dataset: Dataset, derivation: str, name: str) -> Dataset:
    """``dataset`` as the targets of a paired builtin whose inputs ``derivation`` makes."""
    return replace(
        dataset,
        name=name,
        derive_inputs=derivation,
        super_resolution=derivation == "superres-x4",
    )


def photo_crops(split: str) -> Dataset:
    """64x64 RGB crops (stride 32) of the two photographs scikit-learn ships; the test split is
    the crops of each photograph's right-most fifth, which no training crop overlaps."""
    from sklearn.datasets import load_sample_images  # slow import, needed only here

    crops = []
    for photo in load_sample_images().images:
        height, width = photo.shape[:2]
        boundary = int(width * (1 - PHOTO_TEST_FRACTION))
        for top in range(0, height - PHOTO_CROP + 1, PHOTO_STRIDE):
            for left in range(0, width - PHOTO_CROP + 1, PHOTO_STRIDE):
                in_test = left >= boundary
                in_train = left + PHOTO_CROP <= boundary
                if (split == "test" and in_test) or (split == "train" and in_train):
                    crops.append(photo[top : top + PHOTO_CROP, left : left + PHOTO_CROP])
    images = torch.from_numpy(np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2)))
    return Dataset(images, None, None, "photos")
