"""``.npz`` packs: the one on-disk format of an uploaded dataset.

A pack holds ``images`` uint8 (N, H, W) or (N, H, W, C) with C in {1, 3}, optional integer
``labels`` (N,) and optional ``class_names`` (K,) strings.
It is always read with ``allow_pickle=False``.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from gan_engine.data import DatasetError

PACK_KEYS = ("images", "labels", "class_names")
MIN_SIDE, MAX_SIDE = 4, 256
CHANNEL_COUNTS = (1, 3)

PackSource = str | Path | BinaryIO


@dataclass(frozen=True)
class Pack:
    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray | None  # int64 (N,)
    class_names: list[str] | None  # set exactly when labels are


def read_pack(source: PackSource) -> Pack:
    """Read and validate a pack; images come back as (N, C, H, W)."""
    try:
        loaded = np.load(source, allow_pickle=False)
    except FileNotFoundError as error:
        raise DatasetError(f"pack not found: {source}") from error
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise DatasetError(f"not a readable .npz pack ({_describe(error)})") from error
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DatasetError(
            "the file is a single .npy array, not an .npz pack: save it with "
            "np.savez(path, images=..., labels=...)"
        )
    with loaded:
        unknown = sorted(set(loaded.files) - set(PACK_KEYS))
        if unknown:
            raise DatasetError(
                f"unexpected key(s) {', '.join(map(repr, unknown))} in the pack: a pack holds "
                "'images', optional 'labels' and optional 'class_names'"
            )
        if "images" not in loaded.files:
            raise DatasetError("the pack has no 'images' array (uint8, N×H×W or N×H×W×C)")
        arrays = {key: _read_array(loaded, key) for key in PACK_KEYS if key in loaded.files}
    return validate_pack(arrays["images"], arrays.get("labels"), arrays.get("class_names"))


def write_pack(
    target: PackSource,
    images: np.ndarray,
    labels: np.ndarray | Sequence[int] | None = None,
    class_names: Sequence[str] | np.ndarray | None = None,
) -> None:
    """Validate and write a compressed pack; ``images`` is (N, H, W) or (N, H, W, C)."""
    images = np.asarray(images)
    labels = None if labels is None else np.asarray(labels)
    names = None if class_names is None else np.asarray(class_names, dtype=str)
    validate_pack(images, labels, names)
    arrays = {"images": images}
    if labels is not None:
        arrays["labels"] = labels
    if names is not None:
        arrays["class_names"] = names
    np.savez_compressed(target, **arrays)


def validate_pack(
    images: np.ndarray, labels: np.ndarray | None, class_names: np.ndarray | None
) -> Pack:
    """Check pack arrays (images in pack layout N×H×W[×C]) and return them as Dataset parts."""
    images_nchw = _validated_images(images)
    if labels is None:
        if class_names is not None:
            raise DatasetError("'class_names' given without 'labels': add labels or drop the names")
        return Pack(images_nchw, None, None)
    labels = _validated_labels(labels, len(images_nchw))
    names = _validated_class_names(class_names, labels)
    return Pack(images_nchw, labels, names)


def _read_array(npz: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as error:  # object arrays need pickle, which is never allowed
        raise DatasetError(
            f"'{key}' cannot be read without unpickling ({error}); store plain numeric or "
            "string arrays"
        ) from error
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise DatasetError(f"'{key}' is corrupt in the pack ({_describe(error)})") from error


def _validated_images(images: np.ndarray) -> np.ndarray:
    if images.dtype != np.uint8:
        raise DatasetError(f"'images' must be uint8 (0..255), got {images.dtype}")
    if images.ndim not in (3, 4):
        raise DatasetError(
            f"'images' must be N×H×W or N×H×W×C, got {images.ndim} dimensions {images.shape}"
        )
    if images.ndim == 3:
        images = images[..., None]
    count, height, width, channels = images.shape
    if channels not in CHANNEL_COUNTS:
        raise DatasetError(
            f"'images' must have 1 (grey) or 3 (RGB) channels in the last axis, got {channels}"
        )
    if not (MIN_SIDE <= height <= MAX_SIDE and MIN_SIDE <= width <= MAX_SIDE):
        raise DatasetError(
            f"'images' height and width must lie in {MIN_SIDE}..{MAX_SIDE}, got {height}×{width}"
        )
    if count < 1:
        raise DatasetError("'images' holds no image")
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _validated_labels(labels: np.ndarray, count: int) -> np.ndarray:
    if labels.dtype.kind not in "iu":
        raise DatasetError(f"'labels' must be integers, got {labels.dtype}")
    if labels.shape != (count,):
        raise DatasetError(
            f"'labels' must have shape ({count},), one per image, got {labels.shape}"
        )
    if labels.min() < 0:
        raise DatasetError(f"'labels' must be >= 0, got {labels.min()}")
    return labels.astype(np.int64)


def _validated_class_names(class_names: np.ndarray | None, labels: np.ndarray) -> list[str]:
    needed = int(labels.max()) + 1
    if class_names is None:
        return [str(k) for k in range(needed)]
    if class_names.ndim != 1 or class_names.dtype.kind not in "US":
        raise DatasetError(
            f"'class_names' must be a 1-D array of strings, got {class_names.dtype} "
            f"of shape {class_names.shape}"
        )
    names = [
        name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        for name in class_names.tolist()
    ]
    if len(names) < needed:
        raise DatasetError(
            f"'labels' go up to {needed - 1} but 'class_names' has only {len(names)} names: "
            f"give one name per class ({needed} at least)"
        )
    if any(not name.strip() for name in names):
        raise DatasetError("'class_names' must not contain empty names")
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise DatasetError(f"'class_names' must be unique; repeated: {', '.join(duplicates)}")
    return names


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
