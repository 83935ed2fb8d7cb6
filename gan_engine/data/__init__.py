"""Training data: builtins, IDX files and .npz packs, held in memory or memory-mapped.

Images are kept as uint8 (N, C, H, W) already fitted to the model's image size, and scaled to
[-1, 1] per batch; 2-D points are float32 (N, 2). Class names travel with the labels. A large
pack's images stay memory-mapped (``mapped``) and are fitted per read (``fit_size``), so
that nothing ever holds them all: read them through ``images``/``batch``, never ``data``.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from gan_engine.data.fit import fit_images
from gan_engine.errors import EngineError

BOUNDED_READ_ROWS = 1024  # rows of mapped images read between two drops of their pages


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 images to floats in [-1, 1]; points pass through unchanged."""
    return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x


class DatasetError(EngineError):
    """Data that cannot be found or read; the message is meant for the user."""


@dataclass(frozen=True)
class Mapping:
    """A pack file's memory mapping, which a large pack's images are views of."""

    path: Path
    mapping: mmap.mmap

    def drop_pages(self) -> None:
        """Unmap the pages read so far, so that resident memory never grows to the file's size
        (they were never written: a later read maps them from the file again)."""
        if hasattr(self.mapping, "madvise"):
            self.mapping.madvise(mmap.MADV_DONTNEED)


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
    # The pack file mapping whose views ``data`` is (images too large to load); None when the
    # images are in memory.
    mapped: Mapping | None = None
    # Mapped images are fitted to this square side as they are read (``fitted`` sets it).
    fit_size: int | None = None
    # Mapped images restricted to these rows (``dataset.classes``); None: all of them.
    rows: torch.Tensor | None = None

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
        if self.fit_size is not None:
            return (self.data.shape[1], self.fit_size, self.fit_size)
        return tuple(self.data.shape[1:])

    @property
    def stored_size(self) -> tuple[int, int]:
        """(height, width) of the images as stored, before any fitting."""
        return self.fitted_from or (int(self.data.shape[-2]), int(self.data.shape[-1]))

    def __len__(self) -> int:
        return self.data.shape[0] if self.rows is None else len(self.rows)

    def images(self, index: torch.Tensor) -> torch.Tensor:
        """The samples at ``index`` (uint8 images fitted to the model's size, or points): only
        these rows are read."""
        rows = index if self.rows is None else self.rows[index]
        x = self.data[rows]
        return x if self.fit_size is None else fit_images(x, self.fit_size)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Float samples (images in [-1, 1]) and labels at ``index``."""
        x = to_model_range(self.images(index))
        return x, None if self.labels is None else self.labels[index]

    def bounded(self, max_bytes: int, seed: int) -> Dataset:
        """The dataset itself when in memory; of mapped images, an in-memory seeded sample of
        as many as ``max_bytes`` holds (what evaluation reads), read a chunk at a time."""
        if self.mapped is None:
            return self
        sample_bytes = max(1, int(torch.Size(self.sample_shape).numel()))
        count = max(1, min(len(self), max_bytes // sample_bytes))
        generator = torch.Generator().manual_seed(seed)
        index = torch.randperm(len(self), generator=generator)[:count].sort().values
        chunks = []
        for chunk in index.split(BOUNDED_READ_ROWS):
            chunks.append(self.images(chunk))
            self.mapped.drop_pages()
        labels = None if self.labels is None else self.labels[index]
        return replace(
            self, data=torch.cat(chunks), labels=labels, mapped=None, fit_size=None, rows=None
        )


# Imported last: the loaders import Dataset and DatasetError from this module.
from gan_engine.data.builtins import load_dataset  # noqa: E402

__all__ = ["Dataset", "DatasetError", "Mapping", "load_dataset", "to_model_range"]
