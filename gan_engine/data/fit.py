"""Fitting images to the model's square image size: zero-padding when close, resizing otherwise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# A square image at least this fraction of the target side is centred on a zero border (28 -> 32)
# rather than resampled, which would blur its strokes.
PAD_WHEN_AT_LEAST = 0.75
_RESIZE_CHUNK = 1024  # images resized at once, to bound the float copy's memory


def fit_images(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, S, S) with S = ``image_size``."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 (N, C, H, W) images, got {images.dtype} {images.shape}")
    height, width = images.shape[-2:]
    if height == width == image_size:
        return images
    if height == width and fits_by_padding(height, image_size):
        return pad_centred(images, image_size)
    return resize(images, image_size)


def fits_by_padding(side: int, image_size: int) -> bool:
    """A square image of ``side`` is centred on a border rather than resampled to ``image_size``."""
    return PAD_WHEN_AT_LEAST * image_size <= side < image_size


def pad_centred(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Centre images on a zero canvas of side ``image_size`` (an odd margin: 1 more below/right)."""
    height, width = images.shape[-2:]
    top, left = (image_size - height) // 2, (image_size - width) // 2
    bottom, right = image_size - height - top, image_size - width - left
    return F.pad(images, (left, right, top, bottom))


def resize(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Bilinear, antialiased resize to ``image_size``², rounded back to uint8."""
    chunks = [
        F.interpolate(
            chunk.float(),
            size=(image_size, image_size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        .round_()
        .clamp_(0, 255)
        .to(torch.uint8)
        for chunk in images.split(_RESIZE_CHUNK)
    ]
    return torch.cat(chunks)


def fit_inputs(inputs: torch.Tensor, stored_size: tuple[int, int], image_size: int) -> torch.Tensor:
    """A paired pack's given inputs lined up with their targets, stored at ``stored_size`` and
    fitted to ``image_size``: brought to the targets' stored size (bicubic), then fitted alike."""
    if tuple(inputs.shape[-2:]) != tuple(stored_size):
        inputs = bicubic(inputs, stored_size)
    return fit_images(inputs, image_size)


def bicubic(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, C, h, w) -> uint8 (N, C, *size), bicubic (antialiased when shrinking)."""
    chunks = [
        F.interpolate(
            chunk.float(),
            size=size,
            mode="bicubic",
            align_corners=False,
            antialias=chunk.shape[-1] > size[-1],
        )
        .round_()
        .clamp_(0, 255)
        .to(torch.uint8)
        for chunk in images.split(_RESIZE_CHUNK)
    ]
    return torch.cat(chunks)
