"""Turning generator output into pictures: uint8 images, PNG grids, 2-D scatter plots."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageDraw


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) floats in [-1, 1] -> uint8 (N, H, W) for one channel, (N, H, W, C) for more."""
    array = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = array.permute(0, 2, 3, 1).numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def channels_first(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) images (``to_uint8``'s layout) as a (N, C, H, W) tensor."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)


def grid(images: np.ndarray, columns: int, padding: int = 2) -> np.ndarray:
    """Tile uint8 (N, H, W[, C]) images row by row, ``columns`` per row, on a black background."""
    n, height, width = images.shape[:3]
    rows = -(-n // columns)
    canvas_shape = (
        rows * (height + padding) + padding,
        columns * (width + padding) + padding,
        *images.shape[3:],
    )
    canvas = np.zeros(canvas_shape, dtype=np.uint8)
    for i, image in enumerate(images):
        top = padding + (i // columns) * (height + padding)
        left = padding + (i % columns) * (width + padding)
        canvas[top : top + height, left : left + width] = image
    return canvas


def translation_grid(
    inputs: torch.Tensor, outputs: np.ndarray, targets: torch.Tensor
) -> np.ndarray:
    """One row per pair, three columns: input, output, target (grey shown as RGB beside RGB).

    ``inputs`` and ``targets`` are uint8 (N, C, H, W), ``outputs`` uint8 (N, H, W[, C])."""
    columns = [to_uint8(inputs / 127.5 - 1.0), outputs, to_uint8(targets / 127.5 - 1.0)]
    if len({column.ndim for column in columns}) > 1:
        columns = [np.repeat(c[..., None], 3, axis=-1) if c.ndim == 3 else c for c in columns]
    return grid(np.stack(columns, axis=1).reshape(-1, *columns[0].shape[1:]), columns=3)


def decode_image(data: bytes) -> np.ndarray:
    """A PNG or JPEG as uint8 (H, W) when grey, (H, W, 3) otherwise (alpha dropped)."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format not in ("PNG", "JPEG"):
            raise ValueError(f"expected a PNG or JPEG image, got {image.format or 'unknown'}")
        grey = image.mode in ("1", "L", "LA", "I", "I;16")
        return np.asarray(image.convert("L" if grey else "RGB"))


PNG_COMPRESS_LEVEL = 1  # zlib's fastest: a 64-image grid in 1.8 ms and 26 kB, not 8 ms and 22 kB


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


_PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
]  # fmt: skip


def scatter_png(
    points: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    reference: np.ndarray | None = None,
    size: int = 320,
) -> bytes:
    """Generated 2-D points (coloured by label) over grey reference points, as a PNG."""
    shown = points if reference is None else np.concatenate([points, reference])
    low, high = shown.min(0), shown.max(0)
    span = float(max((high - low).max(), 1e-6)) * 1.1
    centre = (low + high) / 2

    def pixel(p: np.ndarray) -> tuple[float, float]:
        x, y = (p - centre) / span + 0.5
        return x * (size - 1), (1 - y) * (size - 1)

    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    for p in reference if reference is not None else []:
        draw.point(pixel(p), fill=(190, 190, 190))
    for i, p in enumerate(points):
        colour = (0, 0, 0) if labels is None else _PALETTE[int(labels[i]) % len(_PALETTE)]
        x, y = pixel(p)
        draw.rectangle((x - 1, y - 1, x + 1, y + 1), fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
