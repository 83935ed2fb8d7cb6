"""Batches: the rows of batch k depend on (seed, k) alone; memory-mapped packs read lazily and
train exactly as the same pack in memory, resumes included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gan_engine.checkpoint import load_checkpoint
from gan_engine.data import builtins
from gan_engine.data.builtins import fit_data, load_pack_dataset, of_classes
from gan_engine.data.loader import Batches, batch_rows
from gan_engine.data.packs import read_pack, write_pack
from gan_engine.trainer import Trainer
from tests.gan_engine.conftest import Recorder, tiny_spec


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    """A 10×10 RGB labelled pack (fitted to the tiny model's 8 by resizing on read)."""
    rng = np.random.default_rng(3)
    path = tmp_path / "pack.npz"
    images = rng.integers(0, 256, (120, 10, 10, 3), np.uint8)
    write_pack(path, images, np.arange(120) % 3, ["a", "b", "c"])
    return path


@pytest.fixture
def mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builtins, "MAPPED_FROM_BYTES", 0)  # map every uncompressed pack


def test_batch_rows_are_a_function_of_seed_and_k_and_ranks_split_the_global_batch() -> None:
    first = batch_rows(7, 5, count=1000, batch_size=12)
    assert torch.equal(first, batch_rows(7, 5, count=1000, batch_size=12))
    assert not torch.equal(first, batch_rows(7, 6, count=1000, batch_size=12))
    assert not torch.equal(first, batch_rows(8, 5, count=1000, batch_size=12))
    shares = [batch_rows(7, 5, 1000, 12, rank=r, world_size=3) for r in range(3)]
    assert [len(s) for s in shares] == [4, 4, 4] and torch.equal(torch.cat(shares), first)


def test_a_mapped_pack_is_a_view_of_the_file_and_reads_what_memory_holds(
    pack: Path, mapped: None
) -> None:
    loaded = read_pack(pack)
    view = read_pack(pack, mapped=True)
    assert view.mapped is not None and view.mapped.path == pack
    assert not view.images.flags.owndata and np.array_equal(view.images, loaded.images)
    dataset, in_memory = load_pack_dataset(pack), load_pack_dataset(pack)
    assert dataset.mapped is not None
    in_memory = type(in_memory)(
        torch.from_numpy(loaded.images), in_memory.labels, in_memory.class_names, "x"
    )
    spec = tiny_spec()
    (_, lazy), (_, eager) = fit_data(spec, dataset), fit_data(spec, in_memory)
    assert lazy.fit_size == 8 and lazy.fitted_from == (10, 10) and eager.fitted_from == (10, 10)
    assert lazy.sample_shape == eager.sample_shape == (3, 8, 8)
    index = torch.tensor([5, 0, 119, 5])
    assert torch.equal(lazy.images(index), eager.data[index])
    picked, kept = of_classes(lazy, [2]), of_classes(eager, [2])
    assert picked.rows is not None and len(picked) == len(kept) == 40
    assert torch.equal(picked.images(torch.arange(40)), kept.data)
    sample = lazy.bounded(20 * 3 * 8 * 8, seed=0)
    assert sample.mapped is None and len(sample) == 20 and sample.data.shape == (20, 3, 8, 8)
    assert sample.labels is not None and len(sample.labels) == 20


def test_mapped_batches_are_read_by_workers_as_memory_gathers_them(
    pack: Path, mapped: None
) -> None:
    spec = tiny_spec()
    _, lazy = fit_data(spec, load_pack_dataset(pack))
    _, eager = fit_data(spec, type(lazy)(torch.from_numpy(read_pack(pack).images), None, None, "x"))
    options = {"batch_size": 16, "seed": 7, "device": torch.device("cpu")}
    reading, gathering = Batches(lazy, **options), Batches(eager, **options)
    assert reading.mapped and not gathering.mapped
    for _ in range(3):
        assert torch.equal(reading.real()[0], gathering.real()[0])
    reading.load_state_dict({"drawn": 1})  # the workers had read ahead: a resume reads batch 1
    gathering.load_state_dict({"drawn": 1})
    assert torch.equal(reading.real()[0], gathering.real()[0])


def test_resuming_on_a_mapped_pack_is_bit_identical(pack: Path, mapped: None) -> None:
    spec = tiny_spec(
        training={"steps": 6}, monitor={"checkpoint_every": 3}, model={"conditioning": "concat"}
    )
    recorder = Recorder()
    uninterrupted = Trainer(spec, load_pack_dataset(pack), callbacks=[recorder])
    assert uninterrupted.batches.mapped
    uninterrupted.fit()
    resumed = Trainer(spec, load_pack_dataset(pack))
    resumed.load_state_dict(load_checkpoint(recorder.checkpoints[3]))
    resumed.fit()
    want, got = uninterrupted.G.state_dict(), resumed.G.state_dict()
    for name in want:
        assert torch.equal(want[name], got[name]), name
