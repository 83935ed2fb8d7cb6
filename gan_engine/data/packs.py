"""``.npz`` packs: the one on-disk format of an uploaded dataset.

A pack holds ``images`` uint8 (N, H, W) or (N, H, W, C) with C in {1, 3}, optional integer
``labels`` (N,) in 0..K-1 and optional ``class_names`` (K,): unique, printable text of
1..MAX_CLASS_NAME_CHARS characters, at most ``max_classes`` of them. A paired pack (task
'translation') holds ``inputs`` and ``targets`` instead of ``images``: the same rules for each,
the same N, sizes and channel counts free (labels, when given, are the targets' classes).
Each member's ``.npy`` header is checked against these rules and against the member's real size
before any array is allocated, and nothing is ever unpickled.

Packs are written uncompressed (ZIP_STORED), so that a large one is read without loading it: its
image members (a paired pack's inputs and targets alike) are memory-mapped at their offset in the
file (``read_pack(..., mapped=True)``).
Compressed packs (written before) stay readable; they are always read into memory.
"""

from __future__ import annotations

import lzma
import math
import mmap
import struct
import sys
import zipfile
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from gan_engine.data import DatasetError, Mapping

PACK_KEYS = ("images", "labels", "class_names", "inputs", "targets")
PAIRED_KEYS = ("inputs", "targets")
IMAGE_KEYS = ("images", *PAIRED_KEYS)
ZIP_LOCAL_HEADER_BYTES = 30
MIN_SIDE, MAX_SIDE = 4, 256
CHANNEL_COUNTS = (1, 3)
MAX_CLASSES = 10_000  # the format's ceiling; a service may allow fewer
MAX_CLASS_NAME_CHARS = 100
MAX_CLASS_NAME_BYTES = 4 * MAX_CLASS_NAME_CHARS  # a name's itemsize: UCS-4 (U) or UTF-8 (S)
WRITE_CHUNK_BYTES = 1 << 20
HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
# What reading a damaged or hostile member raises.
MEMBER_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,  # a compression method zipfile cannot read
)

PackSource = str | Path | BinaryIO


@dataclass(frozen=True)
class Pack:
    images: np.ndarray  # uint8 (N, C, H, W); a paired pack's targets
    labels: np.ndarray | None  # int64 (N,)
    class_names: list[str] | None  # set exactly when labels are
    inputs: np.ndarray | None = None  # uint8 (N, C', H', W'): a paired pack's inputs
    mapped: Mapping | None = None  # set when ``images`` (and ``inputs``) view the file's mapping


@dataclass(frozen=True)
class ArrayHeader:
    """An array's shape and dtype: from a ``.npy`` header, what reading it will allocate."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @classmethod
    def of(cls, array: np.ndarray) -> ArrayHeader:
        return cls(tuple(array.shape), array.dtype)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_pack(source: PackSource, *, max_classes: int = MAX_CLASSES, mapped: bool = False) -> Pack:
    """Read and validate a pack; images come back as (N, C, H, W). ``mapped``: the image members
    (``images``, or a paired pack's ``inputs`` and ``targets``) of an uncompressed pack on disk
    (``is_mappable``) are memory-mapped (copy-on-write, so the file is never written) rather
    than read, and come back as channels-first views of one mapping of the file."""
    with open_pack(source) as archive:
        headers = pack_headers(archive, max_classes=max_classes)
        to_map = (
            [key for key in IMAGE_KEYS if key in headers]
            if mapped and isinstance(source, str | Path) and is_mappable(Path(source))
            else []
        )
        arrays = read_arrays(archive, {k: v for k, v in headers.items() if k not in to_map})
        mapping = _map_members(archive, Path(source), to_map, arrays) if to_map else None  # type: ignore[arg-type]
    images, labels = arrays.get("images", arrays.get("targets")), arrays.get("labels")
    assert images is not None  # pack_headers requires images or targets
    inputs = arrays.get("inputs")
    names = check_pack(
        images, labels, arrays.get("class_names"), max_classes=max_classes, inputs=inputs
    )
    copy = mapping is None
    return Pack(
        _channels_first(images, copy=copy),
        None if labels is None else labels.astype(np.int64),
        names,
        None if inputs is None else _channels_first(inputs, copy=copy),
        None if mapping is None else Mapping(Path(source), mapping),  # type: ignore[arg-type]
    )


def is_mappable(path: Path) -> bool:
    """Whether the pack at ``path`` stores its image members (``images``, or ``inputs`` and
    ``targets``) uncompressed, so memory-mappable."""
    with open_pack(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        members = [infos[f"{key}.npy"] for key in IMAGE_KEYS if f"{key}.npy" in infos]
        return bool(members) and all(m.compress_type == zipfile.ZIP_STORED for m in members)


def image_bytes(path: Path) -> int:
    """The bytes of a pack's image members, from their headers (nothing is read)."""
    with open_pack(path) as archive:
        headers = pack_headers(archive)
    return sum(header.nbytes for key, header in headers.items() if key in IMAGE_KEYS)


def _map_members(
    archive: zipfile.ZipFile, path: Path, keys: list[str], arrays: dict[str, np.ndarray]
) -> mmap.mmap:
    """Map the file once (copy-on-write: it is never written) and put into ``arrays`` each
    stored member of ``keys`` as a view of the mapping at its data's offset."""
    layouts = {key: _member_layout(archive, path, key) for key in keys}
    end = max(
        start + math.prod(shape) * dtype.itemsize for start, shape, _, dtype in layouts.values()
    )
    with open(path, "rb") as handle:
        mapping = mmap.mmap(handle.fileno(), end, access=mmap.ACCESS_COPY)
    if hasattr(mapping, "madvise"):  # batches read scattered rows: no read-ahead around them
        mapping.madvise(mmap.MADV_RANDOM)
    for key, (offset, shape, fortran, dtype) in layouts.items():
        arrays[key] = np.ndarray(
            shape, dtype, buffer=mapping, offset=offset, order="F" if fortran else "C"
        )
    return mapping


def _member_layout(
    archive: zipfile.ZipFile, path: Path, key: str
) -> tuple[int, tuple[int, ...], bool, np.dtype[Any]]:
    """A stored member's data offset in the file, shape, order and dtype: the zip local header
    (30 bytes, then the name and the extra field) and the ``.npy`` header come before the data."""
    info = archive.getinfo(f"{key}.npy")
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(ZIP_LOCAL_HEADER_BYTES)
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        start = info.header_offset + ZIP_LOCAL_HEADER_BYTES + name_length + extra_length
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        shape, fortran, dtype = HEADER_READERS[version](member)
        return start + member.tell(), tuple(shape), fortran, dtype


def _channels_first(images: np.ndarray, *, copy: bool = True) -> np.ndarray:
    """(N, C, H, W): a contiguous copy, or (``copy`` False: a memory-mapped array) a view."""
    if images.ndim == 3:
        images = images[..., None]
    images = images.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(images) if copy else images


def open_pack(source: PackSource) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except FileNotFoundError as error:
        raise DatasetError(f"pack not found: {source}") from error
    except MEMBER_ERRORS as error:  # incl. an entry name flagged UTF-8 that is not UTF-8
        if _starts_like_npy(source):
            raise DatasetError(
                "the file is a single .npy array, not an .npz pack: save it with "
                "np.savez(path, images=..., labels=...)"
            ) from error
        raise DatasetError(f"not a readable .npz pack ({_describe(error)})") from error


def pack_headers(
    archive: zipfile.ZipFile, *, max_classes: int = MAX_CLASSES
) -> dict[str, ArrayHeader]:
    """Each member's ``.npy`` header, checked against the pack format and against the member's
    real size, so that ``read_arrays`` then allocates exactly the sum of their ``nbytes``."""
    names = [info.filename for info in archive.infolist()]
    members = {f"{key}.npy": key for key in PACK_KEYS}
    paired = any(f"{key}.npy" in names for key in PAIRED_KEYS)
    if paired and not all(f"{key}.npy" in names for key in PAIRED_KEYS):
        raise DatasetError(
            "a paired pack needs both 'inputs' and 'targets' arrays (uint8, N×H×W or N×H×W×C)"
        )
    if paired and "images.npy" in names:
        raise DatasetError(
            "the pack holds 'images' and 'inputs'/'targets': a pack is either images "
            "(to generate) or inputs and targets (to translate), not both"
        )
    if not paired and "images.npy" not in names:
        raise DatasetError("the pack has no 'images' array (uint8, N×H×W or N×H×W×C)")
    unknown = sorted({name.removesuffix(".npy") for name in names if name not in members})
    if unknown:
        raise DatasetError(
            f"unexpected key(s) {', '.join(map(repr, unknown))} in the pack: a pack holds "
            "'images' (or paired 'inputs' and 'targets'), optional 'labels' and optional "
            "'class_names'"
        )
    if len(set(names)) != len(names):
        raise DatasetError("the pack holds an array twice")
    headers = {members[name]: _member_header(archive, members[name]) for name in names}
    images = headers["targets" if paired else "images"]
    for key in PAIRED_KEYS if paired else ("images",):
        _check_images(headers[key], key)
    if paired:
        _check_same_count(headers["inputs"], images)
    if "labels" in headers:
        _check_labels(headers["labels"], images.shape[0])
    if "class_names" in headers:
        _check_class_names_array(headers["class_names"], max_classes)
    return headers


def read_arrays(archive: zipfile.ZipFile, headers: dict[str, ArrayHeader]) -> dict[str, np.ndarray]:
    """The arrays whose headers ``pack_headers`` checked."""
    arrays = {}
    for key in headers:
        try:
            with archive.open(f"{key}.npy") as member:
                arrays[key] = np.lib.format.read_array(member, allow_pickle=False)
        except MEMBER_ERRORS as error:
            raise DatasetError(f"'{key}' is corrupt in the pack ({_describe(error)})") from error
    return arrays


def write_pack(
    target: PackSource,
    images: np.ndarray,
    labels: np.ndarray | Sequence[int] | None = None,
    class_names: Sequence[str] | np.ndarray | None = None,
    *,
    inputs: np.ndarray | None = None,
) -> None:
    """Validate and write an uncompressed (memory-mappable) pack; ``images`` is (N, H, W) or
    (N, H, W, C). With ``inputs``, a paired pack: ``images`` are written as its ``targets``."""
    images = np.asarray(images)
    labels = None if labels is None else np.asarray(labels)
    names = None if class_names is None else np.asarray(class_names, dtype=str)
    check_pack(images, labels, names, inputs=inputs)
    arrays = {"labels": labels, "class_names": names}
    if inputs is None:
        arrays["images"] = images
    else:
        arrays.update(inputs=np.asarray(inputs), targets=images)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            if array is not None:
                _write_member(archive, key, np.ascontiguousarray(array))


def _write_member(archive: zipfile.ZipFile, key: str, array: np.ndarray) -> None:
    """``key.npy`` written a chunk at a time, so that no copy of the array is ever held."""
    step = max(1, WRITE_CHUNK_BYTES // max(array.itemsize, 1))
    flat = array.reshape(-1)
    with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(
            member, np.lib.format.header_data_from_array_1_0(array)
        )
        for start in range(0, flat.size, step):
            member.write(flat[start : start + step])


def check_pack(
    images: np.ndarray,
    labels: np.ndarray | None,
    class_names: np.ndarray | None,
    *,
    max_classes: int = MAX_CLASSES,
    inputs: np.ndarray | None = None,
) -> list[str] | None:
    """Check pack arrays (images N×H×W[×C]; with ``inputs``, a paired pack's targets) without
    copying them. Returns the class names as text (``"0"``, ``"1"``... when labels come without
    names), None when unlabelled."""
    if inputs is None:
        _check_images(ArrayHeader.of(images))
    else:
        _check_images(ArrayHeader.of(inputs), "inputs")
        _check_images(ArrayHeader.of(images), "targets")
        _check_same_count(ArrayHeader.of(inputs), ArrayHeader.of(images))
    if labels is None:
        if class_names is not None:
            raise DatasetError("'class_names' given without 'labels': add labels or drop the names")
        return None
    _check_labels(ArrayHeader.of(labels), len(images))
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise DatasetError(f"'labels' must be >= 0, got {low}")
    if high >= max_classes:
        raise DatasetError(
            f"'labels' go up to {high:,}; at most {max_classes:,} classes are allowed "
            f"(labels 0..{max_classes - 1})"
        )
    if class_names is None:
        return [str(k) for k in range(high + 1)]
    _check_class_names_array(ArrayHeader.of(class_names), max_classes)
    names = checked_class_names(_names_of(class_names), max_classes=max_classes)
    if len(names) <= high:
        raise DatasetError(
            f"'labels' go up to {high} but 'class_names' has only {len(names)} names: "
            f"give one name per class ({high + 1} at least)"
        )
    return names


def checked_class_names(
    names: Sequence[str | bytes], *, max_classes: int = MAX_CLASSES
) -> list[str]:
    """Class names as text: UTF-8 when given as bytes, printable (no control character, no
    unpaired surrogate), 1..MAX_CLASS_NAME_CHARS characters, unique, at most ``max_classes``."""
    _check_class_count(len(names), max_classes)
    texts = []
    for name in names:
        try:
            text = name.decode("utf-8") if isinstance(name, bytes) else name
        except UnicodeDecodeError:
            raise DatasetError(f"'class_names' must be UTF-8 text, got {name!r}") from None
        if not text.strip():
            raise DatasetError("'class_names' must not contain empty names")
        if not text.isprintable():
            raise DatasetError(
                f"'class_names' must be printable text: {text!r} holds a control character, "
                "an unpaired surrogate or another unprintable character"
            )
        if len(text) > MAX_CLASS_NAME_CHARS:
            raise DatasetError(
                f"'class_names' must be at most {MAX_CLASS_NAME_CHARS} characters long; "
                f"{text[:20]!r}... has {len(text)}"
            )
        texts.append(text)
    duplicates = sorted(text for text, count in Counter(texts).items() if count > 1)
    if duplicates:
        raise DatasetError(f"'class_names' must be unique; repeated: {', '.join(duplicates)}")
    return texts


# --- the rules, on headers and arrays alike ----------------------------------------------------


def _member_header(archive: zipfile.ZipFile, key: str) -> ArrayHeader:
    info = archive.getinfo(f"{key}.npy")
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            reader = HEADER_READERS.get(version)
            if reader is not None:
                shape, _, dtype = reader(member)
                data_bytes = info.file_size - member.tell()
    except MEMBER_ERRORS as error:
        raise DatasetError(f"'{key}' is not a readable .npy array ({_describe(error)})") from error
    if reader is None:
        raise DatasetError(
            f"'{key}' is in .npy format version {version[0]}.{version[1]}; save the pack with "
            "np.savez (versions 1.0 and 2.0)"
        )
    if dtype.hasobject:
        raise DatasetError(
            f"'{key}' cannot be read without unpickling (it is an object array); store plain "
            "numeric or string arrays"
        )
    header = ArrayHeader(tuple(shape), dtype)
    if any(side < 0 for side in header.shape) or header.nbytes != data_bytes:
        raise DatasetError(
            f"'{key}' declares shape {header.shape} of {dtype} ({header.nbytes:,} bytes) but "
            f"holds {data_bytes:,} bytes of data: the file is damaged"
        )
    return header


def _check_images(images: ArrayHeader, key: str = "images") -> None:
    if images.dtype != np.uint8:
        raise DatasetError(f"'{key}' must be uint8 (0..255), got {images.dtype}")
    if len(images.shape) not in (3, 4):
        raise DatasetError(
            f"'{key}' must be N×H×W or N×H×W×C, got {len(images.shape)} dimensions {images.shape}"
        )
    count, height, width = images.shape[:3]
    channels = images.shape[3] if len(images.shape) == 4 else 1
    if channels not in CHANNEL_COUNTS:
        raise DatasetError(
            f"'{key}' must have 1 (grey) or 3 (RGB) channels in the last axis, got {channels}"
        )
    if not (MIN_SIDE <= height <= MAX_SIDE and MIN_SIDE <= width <= MAX_SIDE):
        raise DatasetError(
            f"'{key}' height and width must lie in {MIN_SIDE}..{MAX_SIDE}, got {height}×{width}"
        )
    if count < 1:
        raise DatasetError(f"'{key}' holds no image")


def _check_same_count(inputs: ArrayHeader, targets: ArrayHeader) -> None:
    if inputs.shape[0] != targets.shape[0]:
        raise DatasetError(
            f"'inputs' holds {inputs.shape[0]:,} images and 'targets' {targets.shape[0]:,}: "
            "a paired pack needs one target per input"
        )


def _check_labels(labels: ArrayHeader, count: int) -> None:
    if labels.dtype.kind not in "iu":
        raise DatasetError(f"'labels' must be integers, got {labels.dtype}")
    if labels.shape != (count,):
        raise DatasetError(
            f"'labels' must have shape ({count},), one per image, got {labels.shape}"
        )


def _check_class_names_array(names: ArrayHeader, max_classes: int) -> None:
    if len(names.shape) != 1 or names.dtype.kind not in "US":
        raise DatasetError(
            f"'class_names' must be a 1-D array of strings, got {names.dtype} "
            f"of shape {names.shape}"
        )
    if names.dtype.itemsize > MAX_CLASS_NAME_BYTES:
        raise DatasetError(
            f"'class_names' is {names.dtype}: names may be at most {MAX_CLASS_NAME_CHARS} "
            "characters long"
        )
    _check_class_count(names.shape[0], max_classes)


def _check_class_count(count: int, max_classes: int) -> None:
    if count > max_classes:
        raise DatasetError(
            f"'class_names' has {count:,} names; at most {max_classes:,} classes are allowed"
        )


def _names_of(class_names: np.ndarray) -> list[str | bytes]:
    """The array's items; numpy cannot make a str of a code point beyond U+10FFFF."""
    if class_names.dtype.kind == "U" and class_names.size and class_names.dtype.itemsize:
        native = np.ascontiguousarray(class_names, dtype=class_names.dtype.newbyteorder("="))
        if int(native.view(np.uint32).max()) > sys.maxunicode:
            raise DatasetError("'class_names' holds code points beyond Unicode (U+10FFFF)")
    items: list[str | bytes] = class_names.tolist()
    return items


def _starts_like_npy(source: PackSource) -> bool:
    size = len(np.lib.format.MAGIC_PREFIX)
    try:
        if isinstance(source, str | Path):
            with open(source, "rb") as handle:
                head = handle.read(size)
        else:
            source.seek(0)
            head = source.read(size)
    except OSError:
        return False
    return head == np.lib.format.MAGIC_PREFIX


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
