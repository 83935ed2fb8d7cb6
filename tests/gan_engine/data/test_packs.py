from __future__ import annotations

import io
import tracemalloc
import zipfile
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


# --- hostile packs: headers are checked before anything is allocated ----------------------------


def _forged_pack(key: str, shape: tuple[int, ...], dtype: str, data: bytes, **arrays: Any) -> Any:
    """A pack whose ``key`` member has this .npy header followed by ``data``, whatever it says."""
    member = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(member, header)
    buffer = _raw_pack(**arrays)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(f"{key}.npy", member.getvalue() + data)
    buffer.seek(0)
    return buffer


def test_a_header_declaring_a_terabyte_allocates_nothing() -> None:
    pack = _forged_pack("images", (2**24, 256, 256), "|u1", b"\x00" * 64)
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=r"declares shape .* holds 64 bytes of data"):
            read_pack(pack)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize(
    ("key", "shape", "dtype", "data", "message"),
    [
        ("images", (3, 8, 8), "|u1", b"\x00" * 100, r"declares shape \(3, 8, 8\)"),
        ("images", (3, 8, 8), "|u1", b"\x00" * 300, "holds 300 bytes"),
        ("images", (-1, 8, 8), "|u1", b"", "declares shape"),
        ("labels", (2,), "<i8", b"\x00" * 8, "labels' declares"),
        ("labels", (2, 1), "<i8", b"\x00" * 16, r"'labels' must have shape \(2,\)"),
        ("labels", (2,), "<f8", b"\x00" * 16, "'labels' must be integers"),
        ("class_names", (1,), "<U101", b"a" * 404, "at most 100 characters"),
        ("class_names", (10_001,), "|S1", b"a" * 10_001, "at most 10,000 classes"),
        ("class_names", (1,), "|O", b"\x00" * 8, "cannot be read without unpickling"),
    ],
    ids=[
        "short",
        "long",
        "negative",
        "labels-short",
        "labels-2d",
        "labels-float",
        "long-names",
        "many-names",
        "object",
    ],
)
def test_forged_headers_are_refused(
    key: str, shape: tuple[int, ...], dtype: str, data: bytes, message: str
) -> None:
    arrays: dict[str, Any] = {"images": _images(2, 8, 8)} if key != "images" else {}
    if key == "class_names":
        arrays["labels"] = np.array([0, 0])
    with pytest.raises(DatasetError, match=message):
        read_pack(_forged_pack(key, shape, dtype, data, **arrays))


def test_a_npy_format_version_3_is_refused() -> None:
    member = io.BytesIO()
    np.lib.format.write_array(member, _images(2, 8, 8), version=(3, 0))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("images.npy", member.getvalue())
    with pytest.raises(DatasetError, match=r"version 3\.0"):
        read_pack(buffer)


def test_labels_are_bounded_by_max_classes() -> None:
    huge = _raw_pack(images=_images(2, 8, 8), labels=np.array([0, 10**12]))
    with pytest.raises(DatasetError, match="at most 10,000 classes"):
        read_pack(huge)
    small = _raw_pack(images=_images(2, 8, 8), labels=np.array([0, 5]))
    with pytest.raises(DatasetError, match=r"at most 5 classes are allowed \(labels 0..4\)"):
        read_pack(small, max_classes=5)
    assert read_pack(small, max_classes=6).class_names == [str(k) for k in range(6)]


def _with_names(names: Any) -> io.BytesIO:
    return _raw_pack(images=_images(2, 8, 8), labels=np.array([0, 1]), class_names=names)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (np.array(["a\ud800", "b"]), "must be printable text"),
        (np.array(["a\x07", "b"]), "must be printable text"),
        (np.array(["a\nb", "b"]), "must be printable text"),
        (np.array([b"\xff\xfe", b"b"]), "must be UTF-8 text"),
        (np.array([b"\xed\xa0\x80", b"b"]), "must be UTF-8 text"),  # an encoded surrogate
        (np.array(["x" * 101, "b"]), "at most 100 characters"),
        (np.array(["a", "b", "c"]), None),
    ],
)
def test_class_names_are_printable_bounded_text(names: np.ndarray, message: str | None) -> None:
    if message is None:
        assert read_pack(_with_names(names)).class_names == ["a", "b", "c"]
        return
    with pytest.raises(DatasetError, match=message):
        read_pack(_with_names(names))


def test_class_names_beyond_unicode_are_refused() -> None:
    names = np.array(["ab", "cd"])
    names.view(np.uint32)[0] = 0x110000
    with pytest.raises(DatasetError, match="beyond Unicode"):
        read_pack(_with_names(names))


def test_too_many_class_names() -> None:
    names = np.array([f"c{k}" for k in range(8)])
    with pytest.raises(DatasetError, match="8 names; at most 4 classes"):
        read_pack(_with_names(names), max_classes=4)


def test_a_bad_utf8_entry_name_is_a_dataset_error() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("images\u00e9.npy", b"x")
    data = buffer.getvalue().replace("images\u00e9".encode(), b"images\xff\xfe")
    with pytest.raises(DatasetError, match=r"not a readable \.npz pack"):
        read_pack(io.BytesIO(data))


def test_write_pack_streams_its_members(tmp_path: Path) -> None:
    """Writing holds about a chunk besides the arrays, not a copy of them."""
    images = _images(128, 256, 256)  # 8 MiB
    tracemalloc.start()
    try:
        write_pack(tmp_path / "p.npz", images, labels=np.arange(128) % 2, class_names=["a", "b"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 << 20
    pack = read_pack(tmp_path / "p.npz")
    np.testing.assert_array_equal(pack.images[:, 0], images)
    assert pack.class_names == ["a", "b"] and pack.labels is not None
