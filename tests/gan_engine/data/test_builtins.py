from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_engine.data import DatasetError, load_dataset
from gan_engine.data.builtins import digits_split
from gan_engine.data.mixtures import MIXTURES
from gan_engine.data.packs import write_pack
from gan_engine.spec import DatasetSpec


@pytest.mark.parametrize(("name", "std"), [("ring8", 0.01), ("grid25", 0.05)])
def test_mixture_points_lie_near_their_modes(name: str, std: float) -> None:
    dataset = load_dataset(DatasetSpec(builtin=name), image_size=32)
    modes = MIXTURES[name].modes
    assert dataset.data.shape == (50000, 2) and dataset.data.dtype == torch.float32
    assert dataset.is_points and dataset.labels is not None
    assert dataset.class_names == [f"mode{k}" for k in range(len(modes))]
    distance = (dataset.data - modes[dataset.labels]).norm(dim=1)
    assert distance.max() < 6 * std
    nearest = torch.cdist(dataset.data, modes).argmin(dim=1)
    assert torch.equal(nearest, dataset.labels)


def test_mixture_splits_differ_and_repeat() -> None:
    train = load_dataset(DatasetSpec(builtin="ring8"))
    test = load_dataset(DatasetSpec(builtin="ring8", split="test"))
    assert not torch.equal(train.data, test.data)
    assert torch.equal(train.data, load_dataset(DatasetSpec(builtin="ring8")).data)


def test_digits_split() -> None:
    train_index, test_index = digits_split(1797)
    assert len(train_index) + len(test_index) == 1797
    assert not set(train_index.tolist()) & set(test_index.tolist())
    again = digits_split(1797)
    assert np.array_equal(train_index, again[0]) and np.array_equal(test_index, again[1])


def test_digits() -> None:
    train = load_dataset(DatasetSpec(builtin="digits"))
    test = load_dataset(DatasetSpec(builtin="digits", split="test"), image_size=16)
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert train.data.shape[1:] == (1, 8, 8) and train.data.dtype == torch.uint8
    assert int(train.data.max()) == 255
    assert test.data.shape[1:] == (1, 16, 16)
    assert train.class_names == [str(d) for d in range(10)]
    assert train.labels is not None and set(train.labels.tolist()) == set(range(10))


def test_fashion_mnist_fitted_to_32(data_dir: Path) -> None:
    dataset = load_dataset(DatasetSpec(builtin="fashion-mnist"), data_dir=data_dir, image_size=32)
    assert dataset.data.shape == (60000, 1, 32, 32) and dataset.name == "fashion-mnist"
    assert dataset.class_names is not None and dataset.class_names[9] == "Ankle boot"
    assert dataset.labels is not None and dataset.labels.dtype == torch.int64


def test_mnist_train_falls_back_to_test_with_a_warning(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.warns(UserWarning, match="train split is not available.*using its test split"):
        dataset = load_dataset(DatasetSpec(builtin="mnist"), data_dir=data_dir)
    assert len(dataset) == 10000 and dataset.data.shape[1:] == (1, 28, 28)
    assert dataset.class_names == [str(d) for d in range(10)]


def test_pack_path(tmp_path: Path) -> None:
    images = np.full((4, 10, 10, 3), 7, dtype=np.uint8)
    write_pack(tmp_path / "shapes.npz", images, labels=[0, 1, 0, 1], class_names=["o", "x"])
    dataset = load_dataset(DatasetSpec(path=str(tmp_path / "shapes.npz")), image_size=8)
    assert dataset.data.shape == (4, 3, 8, 8) and dataset.data.eq(7).all()
    assert dataset.class_names == ["o", "x"] and dataset.name == "shapes"


def test_dataset_ids_are_refused() -> None:
    with pytest.raises(DatasetError, match="resolved by the service"):
        load_dataset(DatasetSpec(id="ds_123"))
