"""Training data: builtins, IDX files and .npz packs, held in memory or memory-mapped.

Images are kept as uint8 (N, C, H, W) already fitted to the model's image size, and scaled to
[-1, 1] per batch; 2-D points are float32 (N, 2). Class names travel with the labels. A large
pack's images (a paired pack's inputs and targets) stay memory-mapped (``mapped``) and are fitted
per read (``fit_size``), so that nothing ever holds them all: read them through ``images``,
``batch``, ``pair`` or ``gathered``, never ``data`` or ``inputs``.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from gan_engine.data.fit import fit_images, fit_inputs
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
    # The pack file mapping whose views ``data`` (and ``inputs``) are (images too large to
    # load); None when the images are in memory.
    mapped: Mapping | None = None
    # Mapped images (and inputs) are fitted to this square side as read (``fitted`` sets it).
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
    def input_shape(self) -> tuple[int, ...]:
        """A paired dataset's (C', H, W) inputs, as read (fitted like the targets)."""
        assert self.inputs is not None
        if self.fit_size is not None:
            return (self.inputs.shape[1], self.fit_size, self.fit_size)
        return tuple(self.inputs.shape[1:])

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

    def pair(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A paired dataset's uint8 inputs and targets at ``index``, fitted to the model's size:
        only these rows are read."""
        assert self.inputs is not None
        inputs = self.inputs[index if self.rows is None else self.rows[index]]
        if self.fit_size is not None:
            inputs = fit_inputs(inputs, self.stored_size, self.fit_size)
        return inputs, self.images(index)

    def gathered(self, index: torch.Tensor) -> Dataset:
        """The samples at ``index`` (labels, and a paired dataset's inputs) as a dataset in
        memory; of mapped images read BOUNDED_READ_ROWS at a time, dropping the pages after each."""
        if self.mapped is None:
            inputs = None if self.inputs is None else self.inputs[index]
            labels = None if self.labels is None else self.labels[index]
            return replace(self, data=self.data[index], inputs=inputs, labels=labels)
        # filled in place: a list of chunks and their concatenation would hold the rows twice
        targets = torch.empty((len(index), *self.sample_shape), dtype=torch.uint8)
        inputs = None
        if self.inputs is not None:
            inputs = torch.empty((len(index), *self.input_shape), dtype=torch.uint8)
        for start in range(0, len(index), BOUNDED_READ_ROWS):
            rows = slice(start, start + BOUNDED_READ_ROWS)
            if inputs is None:
                targets[rows] = self.images(index[rows])
            else:
                inputs[rows], targets[rows] = self.pair(index[rows])
            self.mapped.drop_pages()
        return replace(
            self,
            data=targets,
            inputs=inputs,
            labels=None if self.labels is None else self.labels[index],
            mapped=None,
            fit_size=None,
            rows=None,
        )

    def bounded(self, max_bytes: int, seed: int, pool: torch.Tensor | None = None) -> Dataset:
        """The dataset itself when in memory; of mapped images, an in-memory seeded sample of
        as many as ``max_bytes`` holds (a paired dataset's inputs counted), drawn from the rows
        ``pool`` (default: all), read a chunk at a time: what evaluation reads."""
        if self.mapped is None:
            return self
        candidates = torch.arange(len(self)) if pool is None else pool
        sample_bytes = torch.Size(self.sample_shape).numel()
        if self.inputs is not None:
            sample_bytes += torch.Size(self.input_shape).numel()
        count = max(1, min(len(candidates), max_bytes // max(1, sample_bytes)))
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(candidates), generator=generator)[:count]
        return self.gathered(candidates[order].sort().values)


# Imported last: the loaders import Dataset and DatasetError from this module.
from gan_engine.data.builtins import load_dataset  # noqa: E402

__all__ = ["Dataset", "DatasetError", "Mapping", "load_dataset", "to_model_range"]
