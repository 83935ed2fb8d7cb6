from __future__ import annotations

import gzip
import io
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from gan_engine.data import DatasetError
from gan_engine.data.idx import (
    CLASS_NAMES,
    DATA_DIR_ENV,
    DatasetUnavailableError,
    fetch_idx,
    read_idx,
    resolve_data_dir,
)


def _offline(*args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("no network in tests")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _offline)


def _write_gz(path: Path, payload: bytes) -> Path:
    path.write_bytes(gzip.compress(payload))
    return path


def _idx_images(values: np.ndarray) -> bytes:
    header = (2051).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in values.shape)
    return header + values.astype(np.uint8).tobytes()


def test_fashion_mnist_train(data_dir: Path) -> None:
    images, labels = fetch_idx("fashion-mnist", "train", data_dir)
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,) and labels.dtype == np.int64
    assert labels[:5].tolist() == [9, 0, 0, 3, 0]
    assert np.bincount(labels).tolist() == [6000] * 10
    assert images.max() == 255


def test_fashion_mnist_and_mnist_test(data_dir: Path) -> None:
    images, labels = fetch_idx("fashion-mnist", "test", data_dir)
    assert images.shape == (10000, 28, 28)
    assert np.bincount(labels).tolist() == [1000] * 10
    images, labels = fetch_idx("mnist", "test", data_dir)
    assert images.shape == (10000, 28, 28)
    assert labels[:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]
    assert np.bincount(labels).sum() == 10000 and len(np.bincount(labels)) == 10


def test_class_names() -> None:
    assert CLASS_NAMES["fashion-mnist"][0] == "T-shirt/top"
    assert CLASS_NAMES["fashion-mnist"][9] == "Ankle boot"
    assert len(CLASS_NAMES["fashion-mnist"]) == 10
    assert CLASS_NAMES["mnist"] == [str(d) for d in range(10)]


def test_read_idx_round_trip(tmp_path: Path) -> None:
    values = np.arange(2 * 4 * 5).reshape(2, 4, 5)
    path = _write_gz(tmp_path / "x.gz", _idx_images(values))
    np.testing.assert_array_equal(read_idx(path), values)


def test_bad_magic(tmp_path: Path) -> None:
    path = _write_gz(tmp_path / "x.gz", (1234).to_bytes(4, "big") + bytes(16))
    with pytest.raises(DatasetError, match=r"magic number 1234, expected 2051.*2049"):
        read_idx(path)


def test_truncated_payload(tmp_path: Path) -> None:
    path = _write_gz(tmp_path / "x.gz", _idx_images(np.zeros((3, 4, 4)))[:-5])
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(path)


def test_truncated_gzip(tmp_path: Path) -> None:
    compressed = gzip.compress(_idx_images(np.zeros((3, 4, 4))))
    path = tmp_path / "x.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DatasetError, match="not a complete gzip file"):
        read_idx(path)


def test_offline_error_names_directory_files_and_env(tmp_path: Path, offline: None) -> None:
    with pytest.raises(DatasetUnavailableError) as caught:
        fetch_idx("fashion-mnist", "test", tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "fashion-mnist") in message
    assert "t10k-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert DATA_DIR_ENV in message
    assert list((tmp_path / "fashion-mnist").iterdir()) == []


def test_missing_split_is_not_swapped(data_dir: Path, offline: None) -> None:
    with pytest.raises(DatasetUnavailableError, match=r"train-images-idx3-ubyte\.gz"):
        fetch_idx("mnist", "train", data_dir)


def test_md5_mismatch_discards_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"wrong"))
    with pytest.raises(DatasetError, match="MD5 mismatch") as caught:
        fetch_idx("mnist", "test", tmp_path)
    assert not isinstance(caught.value, DatasetUnavailableError)
    assert list((tmp_path / "mnist").iterdir()) == []


def test_download_checks_md5_and_moves_into_place(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requested: list[str] = []

    def serve_local_copy(url: str, timeout: float) -> io.BytesIO:
        requested.append(url)
        return io.BytesIO((data_dir / "mnist" / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", serve_local_copy)
    images, labels = fetch_idx("mnist", "test", tmp_path)
    assert images.shape == (10000, 28, 28) and len(labels) == 10000
    assert requested == [
        "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
        "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
    ]
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]


def test_data_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv(DATA_DIR_ENV)
    assert resolve_data_dir() == Path.home() / ".cache" / "ganforge" / "datasets"
