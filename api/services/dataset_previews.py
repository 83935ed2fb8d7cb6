"""What a person looks at before training on a dataset: a PNG grid of real images (a row of a
few per class) and the images per class, for uploaded and builtin datasets.

A builtin whose files are not in GANFORGE_DATA_DIR is ``Unavailable`` (503): nothing here ever
downloads, unlike the engine's loader, which fetches missing IDX files."""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from cachetools import LRUCache
from sqlalchemy.orm import Session

from api.schemas import BuiltinDatasetDetail
from api.services.datasets import BUILTINS_BY_NAME, get_dataset
from gan_engine.data import Dataset
from gan_engine.data.builtins import PAIRED_BUILTINS, load_dataset
from gan_engine.data.idx import CLASS_NAMES, missing_files, resolve_data_dir
from gan_engine.data.packs import read_pack
from gan_engine.data.paired import DERIVATIONS
from gan_engine.images import grid, png_bytes, scatter_png
from gan_engine.spec import DatasetSpec
from store.errors import NotFound, Unavailable
from store.storage import ObjectStorage

PER_CLASS = 8  # images in each class's row
UNLABELLED_ROWS = 8
SCATTER_POINTS = 2000
UPLOADED_PREVIEWS_CACHED = 64
PREFERRED_SPLITS = ("train", "test")


def preview_png(images: np.ndarray, labels: np.ndarray | None, num_classes: int) -> bytes:
    """uint8 (N, C, H, W) images: one row of PER_CLASS per class (short rows padded black), or
    the first UNLABELLED_ROWS × PER_CLASS images when unlabelled."""
    if labels is None:
        chosen = images[: UNLABELLED_ROWS * PER_CLASS]
    else:
        blank = np.zeros_like(images[:1])
        rows = []
        for label in range(num_classes):
            found = images[np.flatnonzero(labels == label)[:PER_CLASS]]
            rows.append(np.concatenate([found, *[blank] * (PER_CLASS - len(found))]))
        chosen = np.concatenate(rows)
    tiles = chosen.transpose(0, 2, 3, 1)  # (N, H, W, C)
    return png_bytes(grid(tiles[..., 0] if tiles.shape[-1] == 1 else tiles, columns=PER_CLASS))


def _counts(labels: np.ndarray, num_classes: int) -> list[int]:
    return [int(n) for n in np.bincount(labels, minlength=num_classes)]


# --- uploaded ----------------------------------------------------------------------------------

_uploaded_previews: LRUCache[str, bytes] = LRUCache(maxsize=UPLOADED_PREVIEWS_CACHED)
_uploaded_lock = threading.Lock()


def uploaded_preview(
    session: Session, *, storage: ObjectStorage, tenant_id: str, dataset_id: str
) -> bytes:
    """The grid of an uploaded dataset (its pack is immutable, so the PNG is cached by id)."""
    row = get_dataset(session, tenant_id=tenant_id, dataset_id=dataset_id)
    with _uploaded_lock:
        cached = _uploaded_previews.get(row.id)
    if cached is not None:
        return cached
    with tempfile.TemporaryDirectory(prefix="ganforge-preview-") as folder:
        path = Path(folder) / "pack.npz"
        storage.get_file(row.storage_key, path)
        pack = read_pack(path)
    png = preview_png(pack.images, pack.labels, len(row.class_names or []))
    with _uploaded_lock:
        _uploaded_previews[row.id] = png
    return png


# --- builtin -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltinFacts:
    split: str
    class_counts: list[int]
    preview: bytes


def _available_split(name: str) -> str:
    """The split that is on disk (train first); Unavailable when neither is."""
    source = PAIRED_BUILTINS[name][0] if name in PAIRED_BUILTINS else name  # derived from it
    if source not in CLASS_NAMES:  # generated (mixtures) or shipped in a wheel (digits, photos)
        return PREFERRED_SPLITS[0]
    missing: list[str] = []
    for split in PREFERRED_SPLITS:
        absent = missing_files(source, split)  # type: ignore[arg-type]
        if not absent:
            return split
        missing += absent
    raise Unavailable(
        f"builtin dataset {name!r} is not installed on this service: {', '.join(missing)} "
        f"missing from {resolve_data_dir() / name} (GANFORGE_DATA_DIR); the service never "
        "downloads it, so its operator must put the files there",
        code="dataset_unavailable",
    )


@lru_cache(maxsize=16)
def _builtin_facts(name: str, split: str, data_dir: Path) -> BuiltinFacts:
    dataset: Dataset = load_dataset(
        DatasetSpec(builtin=name, split=split),  # type: ignore[arg-type]
        data_dir=data_dir,
    )
    if dataset.derive_inputs is not None:  # paired: (input, target) side by side
        targets = dataset.data[: UNLABELLED_ROWS * PER_CLASS // 2]
        inputs = DERIVATIONS[dataset.derive_inputs](targets)
        if inputs.shape[1] != targets.shape[1]:
            inputs = inputs.expand(-1, targets.shape[1], -1, -1)
        pairs = torch.stack([inputs, targets], dim=1).flatten(0, 1).numpy()
        counts = (
            []
            if dataset.labels is None
            else _counts(dataset.labels.numpy(), len(dataset.class_names or []))
        )
        return BuiltinFacts(split, counts, preview_png(pairs, None, 0))
    assert dataset.labels is not None and dataset.class_names is not None  # the others are
    labels = dataset.labels.numpy()
    num_classes = len(dataset.class_names)
    if dataset.is_points:
        shown = slice(0, SCATTER_POINTS)
        png = scatter_png(dataset.data[shown].numpy(), labels[shown])
    else:
        png = preview_png(dataset.data.numpy(), labels, num_classes)
    return BuiltinFacts(split, _counts(labels, num_classes), png)


def builtin_facts(name: str) -> BuiltinFacts:
    if name not in BUILTINS_BY_NAME:
        raise NotFound(
            f"no builtin dataset {name!r}: use one of {', '.join(sorted(BUILTINS_BY_NAME))}",
            param="name",
        )
    split = _available_split(name)
    return _builtin_facts(name, split, resolve_data_dir())


def builtin_detail(name: str) -> BuiltinDatasetDetail:
    facts = builtin_facts(name)
    listed = BUILTINS_BY_NAME[name]
    return BuiltinDatasetDetail(
        **listed.model_dump(), split=facts.split, class_counts=facts.class_counts
    )  # type: ignore[arg-type]
