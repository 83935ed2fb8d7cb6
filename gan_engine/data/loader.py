"""The Trainer's real batches: which rows batch k holds, and getting them onto the device.

Batch k of a run holds ``batch_size`` rows drawn uniformly with replacement by a generator seeded
from (seed, k) alone (``batch_seed``), so a resumed run draws exactly what the uninterrupted one
would, however far a loader has prefetched; the checkpoint keeps only k (``state_dict``). A
process that is rank r of ``world_size`` takes its contiguous share of the global batch of rows.

In-memory data is moved to the device once and gathered there (the fast path). Memory-mapped data
(``Dataset.mapped``: images, or paired inputs and targets) is read batch by batch by a
``DataLoader``: worker processes read and fit the rows of the next batches while the device
trains, into pinned memory on CUDA, and drop the file pages they mapped after each batch, so that
their memory stays bounded however long the run.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from gan_engine.data import Dataset, to_model_range

LOADER_WORKERS = 2  # processes reading memory-mapped batches
PREFETCH_BATCHES = 2  # batches each worker reads ahead

Batch = tuple[Tensor, Tensor | None]  # uint8 images (or points), labels


def batch_seed(seed: int, k: int) -> int:
    """The 64-bit seed of batch k's draw: splitmix64 of the run's seed, mixed with k and mixed
    again (a microsecond; numpy's SeedSequence takes 25 µs, a tenth of a small GPU step)."""
    return _splitmix64(_splitmix64(seed) ^ k)


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


_MASK64 = (1 << 64) - 1


def batch_rows(
    seed: int,
    k: int,
    count: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Rows (of ``count``) of batch k: this rank's contiguous share of the global batch.
    ``generator``: a CPU generator to reseed (saves allocating one per batch)."""
    generator = (generator or torch.Generator()).manual_seed(batch_seed(seed, k))
    rows = torch.randint(count, (batch_size,), generator=generator)
    if world_size == 1:
        return rows
    share = batch_size // world_size
    return rows[rank * share : (rank + 1) * share]


class Batches:
    """Real batches (``real``) or training pairs (``paired``), on ``device`` in model range."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        layout: torch.memory_format = torch.contiguous_format,
        pool: Tensor | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        """``pool``: the rows batches are drawn from (translation's training pairs); None: all."""
        self.dataset, self.device, self.layout = dataset, device, layout
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.pool = pool
        self.drawn = 0  # batches handed out: the next one is batch ``drawn``
        self.mapped = dataset.mapped is not None
        self._stream: Iterator[Batch] | None = None
        self._generator = torch.Generator()  # reseeded for each batch's draw
        if not self.mapped:
            self.data = dataset.data.to(device)
            self.labels = None if dataset.labels is None else dataset.labels.to(device)
            self.inputs = None if dataset.inputs is None else dataset.inputs.to(device)

    def rows(self, k: int) -> Tensor:
        """The dataset rows of batch k (this rank's share)."""
        count = len(self.dataset) if self.pool is None else len(self.pool)
        draw = batch_rows(
            self.seed, k, count, self.batch_size, self.rank, self.world_size, self._generator
        )
        return draw if self.pool is None else self.pool[draw]

    def real(self) -> Batch:
        """The next batch: images in [-1, 1] in the training layout, and their labels."""
        k, self.drawn = self.drawn, self.drawn + 1
        if self.mapped:
            x, labels = next(self._mapped_stream(k))
            x = x.to(self.device, non_blocking=True)
            labels = None if labels is None else labels.to(self.device, non_blocking=True)
        else:
            index = self.rows(k).to(self.device)
            x, labels = self.data[index], None if self.labels is None else self.labels[index]
        return to_model_range(x).contiguous(memory_format=self.layout), labels

    def paired(self) -> tuple[Tensor, Tensor]:
        """The next batch of (inputs, targets) in [-1, 1] in the training layout."""
        k, self.drawn = self.drawn, self.drawn + 1
        if self.mapped:
            inputs, targets = next(self._mapped_stream(k))
            assert targets is not None
            inputs = inputs.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
        else:
            assert self.inputs is not None
            index = self.rows(k).to(self.device)
            inputs, targets = self.inputs[index], self.data[index]
        return (
            to_model_range(inputs).contiguous(memory_format=self.layout),
            to_model_range(targets).contiguous(memory_format=self.layout),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"drawn": self.drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.drawn, self._stream = int(state["drawn"]), None

    def _mapped_stream(self, k: int) -> Iterator[Batch]:
        """Batches k, k+1, ... of memory-mapped data, read ahead by the loader's workers."""
        if self._stream is None:
            # a daemonic process (a Celery prefork child) may not start processes: it reads
            # the batches itself
            workers = 0 if multiprocessing.current_process().daemon else LOADER_WORKERS
            loader = DataLoader(
                _MappedBatches(self),
                batch_size=None,  # each item is already a batch
                sampler=itertools.count(k),  # type: ignore[arg-type]
                num_workers=workers,
                prefetch_factor=PREFETCH_BATCHES if workers else None,
                pin_memory=self.device.type == "cuda",
                persistent_workers=workers > 0,
                # its workers' base seed, else drawn from torch's global RNG (which the run's
                # latents come from) when the first batch is read
                generator=torch.Generator().manual_seed(self.seed),
            )
            self._stream = iter(loader)
        return self._stream


class _MappedBatches(torch.utils.data.Dataset[Batch]):
    """Item k: batch k's fitted uint8 images and labels (paired data: inputs and targets), read
    from the mapping in a worker."""

    def __init__(self, batches: Batches) -> None:
        self.batches = batches

    def __getitem__(self, k: int) -> Batch:
        dataset, index = self.batches.dataset, self.batches.rows(k)
        if dataset.is_paired:
            batch: Batch = dataset.pair(index)
        else:
            labels = None if dataset.labels is None else dataset.labels[index]
            batch = dataset.images(index), labels
        if dataset.mapped is not None:
            dataset.mapped.drop_pages()  # else a long run's reads would map the whole file
        return batch
