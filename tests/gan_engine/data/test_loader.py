"""Batches: the rows of batch k depend on (seed, k) alone; memory-mapped packs, image and paired,
read lazily and train exactly as the same pack in memory, resumes included."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gan_engine.checkpoint import load_checkpoint
from gan_engine.data import Dataset, builtins
from gan_engine.data.builtins import fit_data, load_pack_dataset, of_classes
from gan_engine.data.loader import Batches, batch_rows
from gan_engine.data.packs import read_pack, write_pack
from gan_engine.evaluation import translation
from gan_engine.evaluation.translation import TranslationEvaluator
from gan_engine.spec import parse_spec
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


# --- paired packs (task 'translation') ---------------------------------------------------------


@pytest.fixture
def paired_pack(tmp_path: Path) -> Path:
    """120 labelled pairs: 5×5 grey inputs of 10×10 RGB targets (other size, other channels)."""
    rng = np.random.default_rng(4)
    path = tmp_path / "pairs.npz"
    targets = rng.integers(0, 256, (120, 10, 10, 3), np.uint8)
    inputs = rng.integers(0, 256, (120, 5, 5), np.uint8)
    write_pack(path, targets, np.arange(120) % 3, ["a", "b", "c"], inputs=inputs)
    return path


def paired_spec(path: Path, **overrides: Any) -> Any:
    data: dict[str, Any] = {
        "task": "translation",
        "dataset": {"path": str(path)},
        "model": {"image_size": 8, "width": 8},
        "training": {"steps": 6, "batch_size": 8, "ema_decay": 0.9, "seed": 5,
                     "mixed_precision": "off"},
        "monitor": {"log_every": 1, "sample_every": 3, "eval_every": 1000, "checkpoint_every": 3,
                    "samples_per_class": 3, "eval_samples": 100, "metrics": []},
    }  # fmt: skip
    for section, values in overrides.items():
        data[section] = {**data[section], **values}
    return parse_spec(data)


def in_memory(path: Path) -> Dataset:
    """The pack read into memory, whatever MAPPED_FROM_BYTES says."""
    pack = read_pack(path)
    inputs = None if pack.inputs is None else torch.from_numpy(pack.inputs)
    labels = None if pack.labels is None else torch.from_numpy(pack.labels)
    return Dataset(
        torch.from_numpy(pack.images), labels, pack.class_names, path.stem, inputs=inputs
    )


def buffer_of(array: np.ndarray) -> object:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array.base


def test_a_mapped_paired_pack_maps_both_members_and_fits_them_as_memory_does(
    paired_pack: Path, mapped: None
) -> None:
    view, loaded = read_pack(paired_pack, mapped=True), read_pack(paired_pack)
    assert view.mapped is not None and view.inputs is not None and loaded.inputs is not None
    for lazy_member, member in ((view.images, loaded.images), (view.inputs, loaded.inputs)):
        assert not lazy_member.flags.owndata and np.array_equal(lazy_member, member)
    assert buffer_of(view.images) is buffer_of(view.inputs) is view.mapped.mapping  # one mapping
    spec = paired_spec(paired_pack)
    (_, lazy), (_, eager) = (
        fit_data(spec, load_pack_dataset(paired_pack)),
        fit_data(spec, in_memory(paired_pack)),
    )
    assert lazy.mapped is not None and eager.mapped is None and eager.inputs is not None
    assert lazy.input_shape == eager.input_shape == (1, 8, 8)
    assert lazy.sample_shape == eager.sample_shape == (3, 8, 8)
    assert lazy.fitted_from == eager.fitted_from == (10, 10)
    index = torch.tensor([5, 0, 119, 5])
    inputs, targets = lazy.pair(index)
    assert torch.equal(inputs, eager.inputs[index]) and torch.equal(targets, eager.data[index])
    shown = lazy.gathered(index)
    assert shown.mapped is None and shown.inputs is not None and shown.labels is not None
    assert torch.equal(shown.inputs, inputs) and torch.equal(shown.labels, eager.labels[index])
    pool = torch.arange(60, 120)
    sample = lazy.bounded(20 * (3 + 1) * 8 * 8, seed=0, pool=pool)  # inputs counted
    assert len(sample) == 20 and sample.inputs is not None and sample.inputs.shape[0] == 20
    picked = (sample.data[:, None] == eager.data[pool][None]).flatten(2).all(2).any(1)
    assert bool(picked.all())  # drawn from the pool's rows


def test_mapped_paired_batches_are_read_by_workers_as_memory_gathers_them(
    paired_pack: Path, mapped: None
) -> None:
    spec = paired_spec(paired_pack)
    (_, lazy), (_, eager) = (
        fit_data(spec, load_pack_dataset(paired_pack)),
        fit_data(spec, in_memory(paired_pack)),
    )
    options = {"batch_size": 16, "seed": 7, "device": torch.device("cpu"), "pool": torch.arange(90)}
    reading, gathering = Batches(lazy, **options), Batches(eager, **options)
    assert reading.mapped and not gathering.mapped
    for _ in range(3):
        for got, want in zip(reading.paired(), gathering.paired(), strict=True):
            assert torch.equal(got, want)
    reading.load_state_dict({"drawn": 1})  # the workers had read ahead: a resume reads batch 1
    gathering.load_state_dict({"drawn": 1})
    for got, want in zip(reading.paired(), gathering.paired(), strict=True):
        assert torch.equal(got, want)


def test_translation_on_a_mapped_paired_pack_trains_as_in_memory_and_resumes_bit_identically(
    paired_pack: Path, mapped: None
) -> None:
    spec = paired_spec(paired_pack)
    recorder = Recorder()
    uninterrupted = Trainer(spec, load_pack_dataset(paired_pack), callbacks=[recorder])
    assert uninterrupted.batches.mapped
    uninterrupted.fit()
    eager = Trainer(spec, in_memory(paired_pack))
    assert not eager.batches.mapped
    eager.fit()
    resumed = Trainer(spec, load_pack_dataset(paired_pack))
    resumed.load_state_dict(load_checkpoint(recorder.checkpoints[3]))
    resumed.fit()
    want = uninterrupted.G.state_dict()
    for other in (eager, resumed):
        got = other.G.state_dict()
        for name in want:
            assert torch.equal(want[name], got[name]), name
    assert uninterrupted.sample_grid_png() == eager.sample_grid_png()


def test_the_translation_evaluator_reads_a_bounded_sample_of_a_mapped_pack(
    paired_pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = paired_spec(paired_pack, monitor={"metrics": ["fid", "class_accuracy"]})
    eager = Trainer(spec, in_memory(paired_pack))
    monkeypatch.setattr(builtins, "MAPPED_FROM_BYTES", 0)
    lazy = Trainer(spec, load_pack_dataset(paired_pack))
    assert lazy.dataset.mapped is not None
    bound_rows = 10  # of 120 pairs, 24 held out
    bound = bound_rows * (3 + 1) * 8 * 8  # pairs of RGB targets and grey inputs
    monkeypatch.setattr(translation, "EVALUATION_MAX_BYTES", bound)
    reads: list[int] = []  # bytes read from the mapping
    gathered = Dataset.gathered

    def counted(self: Dataset, index: torch.Tensor) -> Dataset:
        if self.mapped is not None:
            inputs = 0 if self.inputs is None else math.prod(self.input_shape)
            reads.append(len(index) * (math.prod(self.sample_shape) + inputs))
        return gathered(self, index)

    monkeypatch.setattr(Dataset, "gathered", counted)
    evaluators = [
        TranslationEvaluator(spec=t.spec, dataset=t.dataset, cache=None, device=t.device)
        for t in (lazy, eager)
    ]
    assert (
        len(evaluators[0].held_out) == bound_rows and "10 held-out pairs" in evaluators[0].notes[0]
    )
    assert torch.equal(evaluators[0].held_out, evaluators[1].held_out[:bound_rows])
    got = evaluators[0].evaluate(lazy.translate)
    assert len(reads) == 3 and max(reads) <= bound and sum(reads) <= 3 * bound
    evaluators[1].held_out = evaluators[1].held_out[:bound_rows]  # the same held-out pairs
    want = evaluators[1].evaluate(eager.translate)
    assert {"fid", "class_accuracy", "evaluator_accuracy"} <= set(got)
    for name in ("l1", "psnr", "ssim", "hf_energy_ratio"):
        assert got[name] == want[name], name
