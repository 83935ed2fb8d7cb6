"""MNIST and Fashion-MNIST as gzip'd IDX files, read from a data directory or downloaded into it.

An IDX file is a big-endian header (magic 2051 and three sizes for images, magic 2049 and one count
for labels) followed by the uint8 values.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.request
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from gan_engine.data import DatasetError

IdxName = Literal["mnist", "fashion-mnist"]
Split = Literal["train", "test"]

DATA_DIR_ENV = "GANFORGE_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/ganforge/datasets")

IDX_FILES: dict[str, tuple[str, str]] = {  # split -> (images, labels)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

MIRRORS: dict[str, str] = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}

MD5S: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

CLASS_NAMES: dict[str, list[str]] = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion-mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_DIMENSIONS_BY_MAGIC = {IMAGES_MAGIC: 3, LABELS_MAGIC: 1}
_DOWNLOAD_TIMEOUT_S = 60


class DatasetUnavailableError(DatasetError):
    """Files that are neither in the data directory nor downloadable (offline, read-only folder)."""


def resolve_data_dir(data_dir: Path | None = None) -> Path:
    """The argument, else $GANFORGE_DATA_DIR, else ~/.cache/ganforge/datasets."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV)
    return Path(from_env).expanduser() if from_env else DEFAULT_DATA_DIR.expanduser()


def read_idx(path: Path) -> np.ndarray:
    """The uint8 array stored in a gzip'd IDX file: (N, H, W) images or (N,) labels."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DatasetError(f"{path} is not a complete gzip file ({error})") from error
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror or error}") from error
    if len(raw) < 4:
        raise DatasetError(f"{path} is truncated: {len(raw)} bytes, shorter than an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in _DIMENSIONS_BY_MAGIC:
        raise DatasetError(
            f"{path} is not an IDX file: magic number {magic}, expected {IMAGES_MAGIC} (images) "
            f"or {LABELS_MAGIC} (labels)"
        )
    ndim = _DIMENSIONS_BY_MAGIC[magic]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DatasetError(f"{path} is truncated: its header needs {header_size} bytes")
    shape = tuple(int(size) for size in np.frombuffer(raw, ">u4", ndim, offset=4))
    expected = int(np.prod(shape))
    if len(raw) - header_size != expected:
        raise DatasetError(
            f"{path} is truncated or corrupt: its header promises {expected} values of shape "
            f"{shape}, the file holds {len(raw) - header_size}"
        )
    return np.frombuffer(raw, np.uint8, expected, offset=header_size).reshape(shape).copy()


def missing_files(name: IdxName, split: Split, data_dir: Path | None = None) -> list[str]:
    """The IDX files of ``split`` not yet in ``data_dir/name/``."""
    folder = resolve_data_dir(data_dir) / name
    return [file for file in IDX_FILES[split] if not (folder / file).is_file()]


def fetch_idx(
    name: IdxName, split: Split, data_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and int64 labels (N,) of one split, downloading missing files.

    Raises DatasetUnavailableError when files are missing and cannot be downloaded; it never
    substitutes the other split.
    """
    if name not in MIRRORS:
        raise DatasetError(f"unknown IDX dataset {name!r}: use one of {sorted(MIRRORS)}")
    if split not in IDX_FILES:
        raise DatasetError(f"unknown split {split!r}: use 'train' or 'test'")
    folder = resolve_data_dir(data_dir) / name
    missing = missing_files(name, split, folder.parent)
    if missing:
        _download_all(name, folder, missing)
    images_file, labels_file = IDX_FILES[split]
    images = read_idx(folder / images_file)
    labels = read_idx(folder / labels_file)
    if images.ndim != 3 or labels.ndim != 1:
        raise DatasetError(
            f"{folder}: {images_file} must hold images and {labels_file} labels; "
            "are the files swapped?"
        )
    if len(images) != len(labels):
        raise DatasetError(
            f"{folder}: {images_file} holds {len(images)} images but {labels_file} "
            f"{len(labels)} labels"
        )
    return images, labels.astype(np.int64)


def _download_all(name: str, folder: Path, files: list[str]) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for file in files:
            _download(MIRRORS[name] + file, folder / file, MD5S[name][file])
    # URLError is an OSError, as are a read-only folder and a full disk; HTTPException a cut stream
    except (OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or error
        raise DatasetUnavailableError(
            f"{name}: {', '.join(files)} not found in {folder} and could not be downloaded "
            f"({reason}). Put the files there, or point {DATA_DIR_ENV} at a directory holding "
            f"{name}/{files[0]}"
        ) from error


def _download(url: str, destination: Path, expected_md5: str) -> None:
    """Stream ``url`` to a temp file beside ``destination``; move it into place if the MD5 fits."""
    md5 = hashlib.md5()
    with tempfile.NamedTemporaryFile(
        dir=destination.parent, prefix=f".{destination.name}.", delete=False
    ) as partial:
        partial_path = Path(partial.name)
        try:
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                while chunk := response.read(1 << 20):
                    md5.update(chunk)
                    partial.write(chunk)
        except BaseException:
            partial_path.unlink(missing_ok=True)
            raise
    if md5.hexdigest() != expected_md5:
        partial_path.unlink(missing_ok=True)
        raise DatasetError(
            f"MD5 mismatch for {url}: got {md5.hexdigest()}, expected {expected_md5}; the download "
            f"was discarded. Retry, or place the canonical file at {destination}"
        )
    partial_path.replace(destination)
