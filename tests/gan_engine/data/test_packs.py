from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gan_engine.data import DatasetError
from gan_engine.data.packs import read_pack, write_pack


def _images(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)


def _raw_pack(**arrays: Any) -> io.BytesIO:
    """A pack written without write_pack's validation, as an uploader might."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    return buffer


def test_round_trip_grey(tmp_path: Path) -> None:
    images = _images(5, 8, 6)
    write_pack(tmp_path / "p.npz", images, labels=[0, 1, 2, 1, 0], class_names=["a", "b", "c"])
    pack = read_pack(tmp_path / "p.npz")
    assert pack.images.shape == (5, 1, 8, 6) and pack.images.dtype == np.uint8
    np.testing.assert_array_equal(pack.images[:, 0], images)
    assert pack.labels is not None and pack.labels.dtype == np.int64
    assert pack.labels.tolist() == [0, 1, 2, 1, 0]
    assert pack.class_names == ["a", "b", "c"]


def test_round_trip_colour_without_labels() -> None:
    images = _images(3, 5, 7, 3)
    buffer = io.BytesIO()
    write_pack(buffer, images)
    buffer.seek(0)
    pack = read_pack(buffer)
    assert pack.images.shape == (3, 3, 5, 7)
    np.testing.assert_array_equal(pack.images.transpose(0, 2, 3, 1), images)
    assert pack.labels is None and pack.class_names is None


def test_default_class_names() -> None:
    pack = read_pack(_raw_pack(images=_images(4, 8, 8), labels=np.array([0, 2, 2, 1])))
    assert pack.class_names == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"images": _images(2, 8, 8).astype(np.float32)}, "'images' must be uint8"),
        ({"images": _images(8, 8)}, "'images' must be N×H×W or N×H×W×C"),
        ({"images": _images(2, 8, 8, 4)}, "'images' must have 1 .* or 3 .* channels"),
        ({"images": _images(2, 3, 8)}, "'images' height and width must lie in 4..256"),
        ({"images": _images(0, 8, 8)}, "'images' holds no image"),
        ({"labels": np.array([0, 1])}, "no 'images' array"),
        ({"images": _images(2, 8, 8), "label": np.array([0, 1])}, "unexpected key.*'label'"),
        ({"images": _images(2, 8, 8), "labels": np.array([0.0, 1.0])}, "'labels' must be integ"),
        ({"images": _images(2, 8, 8), "labels": np.array([0, 1, 1])}, r"'labels' must have shape"),
        ({"images": _images(2, 8, 8), "labels": np.array([0, -1])}, "'labels' must be >= 0"),
        (
            {"images": _images(2, 8, 8), "labels": np.array([0, 2]), "class_names": ["a", "b"]},
            "'labels' go up to 2 but 'class_names' has only 2",
        ),
        (
            {"images": _images(2, 8, 8), "labels": np.array([0, 1]), "class_names": ["a", "a"]},
            "'class_names' must be unique",
        ),
        (
            {"images": _images(2, 8, 8), "labels": np.array([0, 1]), "class_names": ["a", " "]},
            "'class_names' must not contain empty",
        ),
        (
            {"images": _images(2, 8, 8), "labels": np.array([0, 1]), "class_names": [1, 2]},
            "'class_names' must be a 1-D array of strings",
        ),
        ({"images": _images(2, 8, 8), "class_names": ["a"]}, "'class_names' given without"),
    ],
)
def test_validation_errors(arrays: dict[str, Any], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        read_pack(_raw_pack(**arrays))


def test_pickled_object_arrays_are_refused() -> None:
    names = np.array(["a", "b"], dtype=object)
    pack = _raw_pack(images=_images(2, 8, 8), labels=np.array([0, 1]), class_names=names)
    with pytest.raises(DatasetError, match="'class_names' cannot be read without unpickling"):
        read_pack(pack)


def test_not_an_npz(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file")
    with pytest.raises(DatasetError, match=r"not a readable \.npz pack"):
        read_pack(tmp_path / "junk.npz")
    with pytest.raises(DatasetError, match=r"not a readable \.npz pack"):
        read_pack(io.BytesIO(b"PK\x03\x04 broken zip"))


def test_single_npy_array_is_not_a_pack() -> None:
    buffer = io.BytesIO()
    np.save(buffer, _images(2, 8, 8))
    buffer.seek(0)
    with pytest.raises(DatasetError, match=r"single \.npy array"):
        read_pack(buffer)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="pack not found"):
        read_pack(tmp_path / "absent.npz")


def test_write_pack_validates() -> None:
    with pytest.raises(DatasetError, match="'labels' must have shape"):
        write_pack(io.BytesIO(), _images(3, 8, 8), labels=[0, 1])
