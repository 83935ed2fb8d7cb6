"""Training data: builtins, IDX files and .npz packs, held in memory.

Images are kept as uint8 (N, C, H, W) already fitted to the model's image size, and scaled to
[-1, 1] per batch; 2-D points are float32 (N, 2). Class names travel with the labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gan_engine.errors import EngineError


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 images to floats in [-1, 1]; points pass through unchanged."""
    return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x


class DatasetError(EngineError):
    """Data that cannot be found or read; the message is meant for the user."""


@dataclass(frozen=True)
class Dataset:
    data: torch.Tensor  # uint8 (N, C, H, W) for images, float32 (N, 2) for points
    labels: torch.Tensor | None  # int64 (N,), values in [0, len(class_names))
    class_names: list[str] | None  # set exactly when labels are
    name: str
    # (height, width) of the images as stored, when they were padded or resized to the model's
    # size; None when used as they are.
    fitted_from: tuple[int, int] | None = None
    # Paired data (task 'translation'): uint8 (N, C', H, W) inputs, one per image in ``data``
    # (the targets), fitted to the same size.
    inputs: torch.Tensor | None = None
    # How the inputs are derived from the targets once these are fitted (the paired builtins:
    # gan_engine.data.paired.DERIVATIONS); None when the inputs are given.
    derive_inputs: str | None = None
    # The inputs are the targets downsampled and upsampled again (bicubic): super-resolution,
    # whose bicubic baseline the inputs themselves are.
    super_resolution: bool = False

    @property
    def is_paired(self) -> bool:
        return self.inputs is not None or self.derive_inputs is not None

    @property
    def is_points(self) -> bool:
        return self.data.dtype != torch.uint8

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    def __len__(self) -> int:
        return self.data.shape[0]

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Float samples (images in [-1, 1]) and labels at ``index``."""
        x = to_model_range(self.data[index])
        return x, None if self.labels is None else self.labels[index]


# Imported last: the loaders import Dataset and DatasetError from this module.
from gan_engine.data.builtins import load_dataset  # noqa: E402

__all__ = ["Dataset", "DatasetError", "load_dataset", "to_model_range"]
