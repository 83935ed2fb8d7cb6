"""The builtin datasets and ``load_dataset``, the one way a run gets its data."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from gan_engine.data import Dataset, DatasetError
from gan_engine.data.fit import fit_images
from gan_engine.data.idx import (
    CLASS_NAMES,
    DatasetUnavailableError,
    IdxName,
    Split,
    fetch_idx,
    missing_files,
    resolve_data_dir,
)
from gan_engine.data.mixtures import MIXTURES
from gan_engine.data.packs import image_bytes, is_mappable, read_pack
from gan_engine.data.paired import paired_fitted, photo_crops, with_derived_inputs
from gan_engine.spec import DatasetSpec, Spec

# An uncompressed pack whose image members are larger than this is memory-mapped and read batch by
# batch; smaller ones are loaded (and, for training, moved to the device whole: the fast path).
MAPPED_FROM_BYTES = 512 * 1024 * 1024
MIXTURE_POINTS = 50_000
MIXTURE_SEEDS: dict[str, int] = {"train": 0, "test": 1}
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
# The paired builtins (task 'translation'): the images they are derived from, and how.
PAIRED_BUILTINS: dict[str, tuple[str, str]] = {
    "edges2fashion": ("fashion-mnist", "edges"),
    "superres-x4-fashion": ("fashion-mnist", "superres-x4"),
    "superres-x4-mnist": ("mnist", "superres-x4"),
    "superres-x4-photos": ("photos", "superres-x4"),
}


def load_dataset(
    spec: DatasetSpec,
    *,
    data_dir: Path | None = None,
    image_size: int | None = None,
    pack_path: Path | None = None,
) -> Dataset:
    """The dataset a spec names, images fitted to ``image_size`` when given (points never are).

    ``pack_path``: the local copy of the pack behind ``{"id": ...}`` (the service downloads it).
    """
    if spec.id is not None and pack_path is None:
        raise DatasetError(
            "dataset ids are resolved by the service; the engine reads {'path': ...} packs",
            param="dataset.id",
        )
    if pack_path is not None or spec.path is not None:
        path = pack_path if pack_path is not None else Path(str(spec.path)).expanduser()
        dataset = load_pack_dataset(path, name=spec.id or path.stem)
    elif spec.builtin in PAIRED_BUILTINS:
        source, derivation = PAIRED_BUILTINS[spec.builtin]
        targets = (
            photo_crops(spec.split)
            if source == "photos"
            else load_idx_dataset(source, spec.split, data_dir)  # type: ignore[arg-type]
        )
        dataset = with_derived_inputs(targets, derivation, spec.builtin)
    elif spec.builtin in MIXTURES:
        dataset = load_mixture(spec.builtin, spec.split)
    elif spec.builtin == "digits":
        dataset = load_digits(spec.split)
    elif spec.builtin in CLASS_NAMES:
        dataset = load_idx_dataset(spec.builtin, spec.split, data_dir)
    else:
        raise DatasetError(f"unknown builtin dataset {spec.builtin!r}")
    if spec.classes is not None:
        dataset = of_classes(dataset, spec.classes)
    return dataset if image_size is None else fitted(dataset, image_size)


def of_classes(dataset: Dataset, classes: list[int]) -> Dataset:
    """Only the samples whose label is in ``classes`` (``dataset.classes``)."""
    if dataset.labels is None:
        raise DatasetError(
            f"dataset.classes needs a labelled dataset; '{dataset.name}' has no labels",
            param="dataset.classes",
        )
    unknown = sorted(set(classes) - set(range(dataset.num_classes)))
    if unknown:
        raise DatasetError(
            f"dataset.classes {unknown[:5]} out of range: '{dataset.name}' has classes "
            f"0..{dataset.num_classes - 1}",
            param="dataset.classes",
        )
    keep = torch.isin(dataset.labels, torch.tensor(classes, dtype=dataset.labels.dtype))
    if not bool(keep.any()):
        raise DatasetError(
            f"'{dataset.name}' has no sample of classes {classes}", param="dataset.classes"
        )
    if dataset.mapped is not None:  # the rows are picked, never read
        rows = keep.nonzero().squeeze(1)
        if dataset.rows is not None:
            rows = dataset.rows[rows]
        return replace(dataset, labels=dataset.labels[keep], rows=rows)
    return Dataset(
        dataset.data[keep], dataset.labels[keep], dataset.class_names, dataset.name,
        fitted_from=dataset.fitted_from,
    )  # fmt: skip


def subset_index(dataset: Dataset, per_class: int, seed: int) -> torch.Tensor:
    """``dataset.subset``: the indices, in dataset order, of ``per_class`` samples of every class
    present, picked as the first of a permutation seeded by ``seed`` (the same every run)."""
    if dataset.labels is None:
        raise DatasetError(
            f"dataset.subset picks images per class; '{dataset.name}' has no labels",
            param="dataset.subset",
        )
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=generator)
    picked = []
    for label in dataset.labels.unique().tolist():
        of_class = order[dataset.labels[order] == label]
        if len(of_class) < per_class:
            name = dataset.class_names[label] if dataset.class_names else str(label)
            raise DatasetError(
                f"dataset.subset.per_class {per_class} is more than the {len(of_class)} "
                f"images of class {label} ('{name}') in '{dataset.name}'",
                param="dataset.subset.per_class",
            )
        picked.append(of_class[:per_class])
    return torch.cat(picked).sort().values


def fit_data(spec: Spec, dataset: Dataset) -> tuple[Spec, Dataset]:
    """The spec with ``model.image_size`` resolved from the data when unset, and the data fitted
    to it."""
    if dataset.is_points:
        return spec, dataset
    spec = spec.fitted_to(*dataset.stored_size)
    assert spec.model.image_size is not None
    return spec, fitted(dataset, spec.model.image_size)


def fitted(dataset: Dataset, image_size: int) -> Dataset:
    """Images padded or resized to ``image_size`` squared (points and fitting images unchanged);
    paired data's inputs lined up with its targets."""
    height, width = dataset.data.shape[-2:]
    if dataset.is_paired and dataset.mapped is not None:  # both fitted per read: Dataset.pair
        fitted_from = None if (height, width) == (image_size, image_size) else (height, width)
        return replace(dataset, fit_size=image_size, fitted_from=fitted_from)
    if dataset.is_paired:
        return paired_fitted(dataset, image_size)
    if dataset.is_points or dataset.data.shape[-2:] == (image_size, image_size):
        return dataset
    if dataset.mapped is not None:  # fitted per read, see Dataset.images
        return replace(dataset, fit_size=image_size, fitted_from=(int(height), int(width)))
    return Dataset(
        fit_images(dataset.data, image_size),
        dataset.labels,
        dataset.class_names,
        dataset.name,
        fitted_from=(int(height), int(width)),
    )


def load_mixture(name: str, split: Split) -> Dataset:
    """50,000 points of a PacGAN mixture labelled by mode; train and test use different seeds."""
    mixture = MIXTURES[name]
    generator = torch.Generator().manual_seed(MIXTURE_SEEDS[split])
    points, modes = mixture.sample(MIXTURE_POINTS, generator)
    class_names = [f"mode{k}" for k in range(len(mixture.modes))]
    return Dataset(points.float(), modes.long(), class_names, name)


def load_digits(split: Split) -> Dataset:
    """scikit-learn's 1,797 8×8 digits, split 80/20 by a fixed permutation."""
    from sklearn.datasets import load_digits as sklearn_digits  # slow import, needed only here

    digits = sklearn_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    train_index, test_index = digits_split(len(images))
    index = train_index if split == "train" else test_index
    labels = torch.from_numpy(digits.target[index].astype(np.int64))
    class_names = [str(digit) for digit in range(10)]
    return Dataset(torch.from_numpy(images[index]), labels, class_names, "digits")


def digits_split(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices; RandomState's stream is frozen, so the split never changes."""
    permutation = np.random.RandomState(DIGITS_SPLIT_SEED).permutation(count)
    test_count = round(count * DIGITS_TEST_FRACTION)
    return np.sort(permutation[test_count:]), np.sort(permutation[:test_count])


def load_idx_dataset(name: IdxName, split: Split, data_dir: Path | None = None) -> Dataset:
    """MNIST or Fashion-MNIST; a missing split is replaced by the other one, with a warning."""
    try:
        images, labels = fetch_idx(name, split, data_dir)
    except DatasetUnavailableError as unavailable:
        other: Split = "test" if split == "train" else "train"
        if missing_files(name, other, data_dir):
            raise
        warnings.warn(
            f"{name}: the {split} split is not available in {resolve_data_dir(data_dir) / name} "
            f"and could not be downloaded; using its {other} split instead ({unavailable})",
            stacklevel=3,
        )
        images, labels = fetch_idx(name, other, data_dir)
    return Dataset(
        torch.from_numpy(images[:, None]), torch.from_numpy(labels), list(CLASS_NAMES[name]), name
    )


def load_pack_dataset(path: Path, *, name: str | None = None) -> Dataset:
    """The pack at ``path``: memory-mapped when it is an uncompressed pack whose image members
    (images, or inputs and targets) take more than MAPPED_FROM_BYTES, read into memory
    otherwise."""
    mapped = is_mappable(path) and image_bytes(path) > MAPPED_FROM_BYTES
    pack = read_pack(path, mapped=mapped)
    labels = None if pack.labels is None else torch.from_numpy(pack.labels)
    inputs = None if pack.inputs is None else torch.from_numpy(pack.inputs)
    return Dataset(
        torch.from_numpy(pack.images),
        labels,
        pack.class_names,
        name or path.stem,
        inputs=inputs,
        super_resolution=inputs is not None and is_super_resolution(inputs, pack.images.shape),
        mapped=pack.mapped,
    )


def is_super_resolution(inputs: torch.Tensor, target_shape: tuple[int, ...]) -> bool:
    """Inputs smaller than their targets, with the same channels: upsampling them (bicubic) is
    the baseline a super-resolution model is read against."""
    channels, height, width = target_shape[1:]
    return inputs.shape[1] == channels and inputs.shape[2] < height and inputs.shape[3] < width
