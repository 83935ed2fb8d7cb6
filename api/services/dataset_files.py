"""Turning an uploaded file into validated pack arrays: an ``.npz`` pack or a ``.zip`` of class
folders. Paired data (task 'translation') comes as an ``.npz`` with ``inputs`` and ``targets``, or
as a ``.zip`` whose only two folders are ``A/`` (inputs) and ``B/`` (targets) holding the same
file names.

Everything a user sends is checked before it is trusted, from headers before anything is decoded:
the type by magic bytes; the archive's entry count, names (no absolute paths, ``..`` or
backslashes), entry types (no symbolic links), compression methods, declared uncompressed size and
compression ratio (zip bombs); each ``.npy`` header against its member's real size
(``gan_engine.data.packs``); each image's size from its header. Members are read through
``zipfile``, which never yields more than an entry's declared size. Decoded arrays are allocated
once, at their final size, and only after ``DecodingBudget`` has granted their bytes. Nothing is
unpickled.
"""

from __future__ import annotations

import contextlib
import functools
import lzma
import math
import re
import stat
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from api.config import ApiSettings
from gan_engine.data import DatasetError, packs
from store.errors import Busy, InvalidRequest, PayloadTooLarge, UnsupportedMediaType

FILE = "file"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an archive; an empty one
NPY_MAGIC = b"\x93NUMPY"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
EXTENSIONS = (".npz", ".zip")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
IMAGE_FORMATS = ("PNG", "JPEG")
COMPRESSION_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
RATIO_CHECK_FROM = 1 << 20  # archives smaller than this, uncompressed, cannot be bombs
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
BUSY_RETRY_AFTER_S = 5
# What a damaged archive or member raises while it is read.
ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    NotImplementedError,
    UnicodeDecodeError,  # a local header's name flagged UTF-8
)

Reserve = Callable[[int], None]


@dataclass(frozen=True)
class Converted:
    images: np.ndarray  # uint8 (N, H, W) or (N, H, W, C): the pack layout; paired: the targets
    labels: np.ndarray | None
    class_names: list[str] | None
    inputs: np.ndarray | None = None  # paired data's inputs, one per target


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_dataset", param=FILE)


def _too_large(message: str) -> PayloadTooLarge:
    return PayloadTooLarge(message, param=FILE)


class DecodingBudget:
    """The bytes of decoded uploads this process holds at once, shared by concurrent uploads."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` for the block, or refuse at once (never wait) when they do not fit."""
        if nbytes > self.capacity:
            raise _too_large(
                f"decoding this upload takes {nbytes:,} bytes; at most {self.capacity:,} "
                "(MAX_DECODING_BYTES)"
            )
        with self._lock:
            if self.used + nbytes > self.capacity:
                raise Busy(
                    f"other uploads are being decoded: the {nbytes:,} bytes this one needs are "
                    "not free right now; retry shortly",
                    param=FILE,
                    retry_after_s=BUSY_RETRY_AFTER_S,
                )
            self.used += nbytes
        try:
            yield
        finally:
            with self._lock:
                self.used -= nbytes


@functools.cache
def decoding_budget(capacity: int) -> DecodingBudget:
    """This process's budget of ``capacity`` bytes (MAX_DECODING_BYTES)."""
    return DecodingBudget(capacity)


def check_file_type(path: Path, filename: str) -> None:
    """An archive by its first bytes, and by its extension when it has one (else 415)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    suffix = Path(filename).suffix.lower()
    if head.startswith(ZIP_MAGIC) and suffix in ("", *EXTENSIONS):
        return
    if head.startswith(NPY_MAGIC):
        what = "a single .npy array (save arrays with np.savez(path, images=..., labels=...))"
    elif head.startswith(ZIP_MAGIC):
        what = f"a zip archive named *{suffix}"
    else:
        what = "an empty file" if not head else f"a {suffix or 'file'} that is not a zip archive"
    raise UnsupportedMediaType(
        "upload an .npz pack (images, optional labels and class_names) or a .zip of "
        f"class-named folders of PNG/JPEG images; got {what}",
        param=FILE,
    )


@contextlib.contextmanager
def converted(path: Path, settings: ApiSettings) -> Iterator[Converted]:
    """The images, labels and class names of an uploaded archive, checked and decoded, their
    bytes held against the process's decoding budget until the block ends.

    An archive of ``.npy`` members is an ``.npz`` pack; anything else, a zip of images."""
    budget = decoding_budget(settings.max_decoding_bytes)
    with contextlib.ExitStack() as held:

        def reserve(nbytes: int) -> None:
            held.enter_context(budget.reserve(nbytes))

        with _reading():
            archive = held.enter_context(_open_archive(path))
            check_archive(archive, path.stat().st_size, settings)
            members = [i.filename for i in archive.infolist() if not i.is_dir()]
            if members and all(m.endswith(".npy") for m in members):
                result = from_npz(archive, settings, reserve)
            else:
                result = images_from_folders(archive, settings, reserve)
        yield result


@contextlib.contextmanager
def _reading() -> Iterator[None]:
    """Errors of the file's content become 422s naming the file."""
    try:
        yield
    except DatasetError as error:
        raise _invalid(str(error)) from None
    except ARCHIVE_ERRORS as error:
        raise _invalid(f"the archive is corrupt ({error or type(error).__name__})") from None


def _open_archive(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except UnicodeDecodeError as error:  # zipfile decodes names while it opens the archive
        raise _invalid(
            f"an entry name is marked UTF-8 but is not valid UTF-8 ({error.object[:60]!r})"
        ) from None


# --- the archive -------------------------------------------------------------------------------


def check_member_name(name: str) -> None:
    """Refuse names that could escape a folder when extracted (zip slip)."""
    if "\x00" in name or "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise _invalid(f"unsafe path in the archive: {name!r} (absolute or with backslashes)")
    if ".." in name.split("/"):
        raise _invalid(f"unsafe path in the archive: {name!r} ('..' is not allowed)")


def check_archive(archive: zipfile.ZipFile, compressed_bytes: int, settings: ApiSettings) -> None:
    """Everything the central directory tells, before any member is read."""
    infos = archive.infolist()
    if len(infos) > settings.max_zip_entries:
        raise _too_large(
            f"the archive has {len(infos):,} entries; at most {settings.max_zip_entries:,} "
            "(MAX_ZIP_ENTRIES)"
        )
    total = 0
    for info in infos:
        check_member_name(info.filename)
        if not 0 <= info.header_offset < compressed_bytes:
            raise _invalid(f"the archive is corrupt ({info.filename!r} lies outside of it)")
        if info.flag_bits & 0x1:
            raise _invalid(f"encrypted entries are not supported: {info.filename!r}")
        if info.compress_type not in COMPRESSION_METHODS:
            raise _invalid(
                f"{info.filename!r} uses compression method {info.compress_type}; supported: "
                + ", ".join(f"{name} ({k})" for k, name in COMPRESSION_METHODS.items())
            )
        if stat.S_IFMT(info.external_attr >> 16) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise _invalid(
                f"{info.filename!r} is a symbolic link or another special file; only regular "
                "files and folders are accepted"
            )
        total += info.file_size
    if total > settings.max_uncompressed_bytes:
        raise _too_large(
            f"the archive expands to {total:,} bytes; at most {settings.max_uncompressed_bytes:,}"
        )
    ratio = total / max(compressed_bytes, 1)
    if total > RATIO_CHECK_FROM and ratio > settings.max_zip_ratio:
        raise _too_large(
            f"the archive expands {ratio:.0f}× (at most {settings.max_zip_ratio:g}×, "
            "MAX_ZIP_RATIO): refused as a possible zip bomb"
        )


def check_count_and_side(count: int, height: int, width: int, settings: ApiSettings) -> None:
    if count > settings.max_images:
        raise _too_large(f"{count:,} images; at most {settings.max_images:,} (MAX_IMAGES)")
    if max(height, width) > settings.max_image_side:
        raise _invalid(
            f"images are {height}×{width}; the longest side may be at most "
            f"{settings.max_image_side} pixels (MAX_IMAGE_SIDE): resize them first"
        )


# --- an .npz pack ------------------------------------------------------------------------------


def from_npz(archive: zipfile.ZipFile, settings: ApiSettings, reserve: Reserve) -> Converted:
    """The pack's arrays, read once their headers fit. Their bytes equal the members' sizes
    (``pack_headers`` checks it), which ``check_archive`` bounded by MAX_UNCOMPRESSED_BYTES."""
    headers = packs.pack_headers(archive, max_classes=settings.max_classes)
    image_keys = [key for key in ("images", *packs.PAIRED_KEYS) if key in headers]
    for key in image_keys:
        check_count_and_side(*headers[key].shape[:3], settings)
    reserve(sum(header.nbytes for header in headers.values()))
    arrays = packs.read_arrays(archive, headers)
    images, labels, inputs = arrays.get("images"), arrays.get("labels"), arrays.get("inputs")
    if images is None:
        images = arrays["targets"]
    names = packs.check_pack(
        images, labels, arrays.get("class_names"), max_classes=settings.max_classes, inputs=inputs
    )
    return Converted(images, labels, names, inputs)


# --- a zip of class folders --------------------------------------------------------------------


def _ignored(name: str) -> bool:
    parts = name.split("/")
    return parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts if p)


def image_entries(archive: zipfile.ZipFile) -> tuple[list[tuple[str, zipfile.ZipInfo]], bool]:
    """``(class folder or "", entry)`` sorted, and whether the images are labelled by folder.

    Images sit in one folder per class (``cat/1.png``), or all at the top for an unlabelled
    dataset; folders enclosing everything (``pets/cat/1.png``, ``cats/1.png``) are ignored.
    """
    infos = [i for i in archive.infolist() if not i.is_dir() and not _ignored(i.filename)]
    if not infos:
        raise _invalid("the archive holds no image (PNG or JPEG in class-named folders)")
    paths = [i.filename.strip("/").split("/") for i in infos]
    while all(len(p) > 1 for p in paths) and len({p[0] for p in paths}) == 1:
        paths = [p[1:] for p in paths]
    depths = {len(p) for p in paths}
    if len(depths) > 1 or depths - {1, 2}:
        raise _invalid(
            "put the images in one folder per class (cat/1.png, dog/2.png), or all at the top "
            "of the archive for an unlabelled dataset; found images at different depths"
        )
    labelled = depths == {2}
    entries = []
    for parts, info in zip(paths, infos, strict=True):
        if not parts[-1].lower().endswith(IMAGE_EXTENSIONS):
            raise _invalid(f"{info.filename!r} is not a .png/.jpg/.jpeg image")
        entries.append((parts[0] if labelled else "", info))
    entries.sort(key=lambda entry: (entry[0], entry[1].filename))
    return entries, labelled


def _decode(archive: zipfile.ZipFile, info: zipfile.ZipInfo, settings: ApiSettings) -> Image.Image:
    """One image, its size checked from its header before its pixels are decoded (Pillow's own
    decompression-bomb guard stays on as well)."""
    with archive.open(info) as member:
        if not member.peek(len(PNG_MAGIC)).startswith((PNG_MAGIC, JPEG_MAGIC)):
            raise _invalid(f"{info.filename!r} is not a PNG or JPEG image (by its content)")
        try:
            image = Image.open(member, formats=IMAGE_FORMATS)
            width, height = image.size
            if max(width, height) > settings.max_image_side:
                raise _invalid(
                    f"{info.filename!r} is {height}×{width}; the longest side may be at most "
                    f"{settings.max_image_side} pixels (MAX_IMAGE_SIDE): resize the images first"
                )
            image.load()
            transposed = ImageOps.exif_transpose(image)
        except InvalidRequest:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise _invalid(f"{info.filename!r} is not a readable image ({error})") from None
    assert transposed is not None  # None only in place
    return transposed


def images_from_folders(
    archive: zipfile.ZipFile, settings: ApiSettings, reserve: Reserve
) -> Converted:
    """The images decoded into one array, allocated (and reserved) from the first image's size."""
    entries, labelled = image_entries(archive)
    if len(entries) > settings.max_images:
        raise _too_large(f"{len(entries):,} images; at most {settings.max_images:,} (MAX_IMAGES)")
    folders = sorted({folder for folder, _ in entries})
    if labelled and folders == list(PAIRED_FOLDERS):
        return _paired_from_folders(archive, entries, settings, reserve)
    class_names = None
    if labelled:
        class_names = packs.checked_class_names(folders, max_classes=settings.max_classes)
    images = _decoded_images(archive, [info for _, info in entries], settings, reserve)
    labels = None
    names = None
    if class_names is not None:
        index = {name: k for k, name in enumerate(class_names)}
        labels = np.array([index[folder] for folder, _ in entries], dtype=np.int64)
        names = np.array(class_names)
    packs.check_pack(images, labels, names, max_classes=settings.max_classes)
    return Converted(images, labels, class_names)


PAIRED_FOLDERS = ("A", "B")  # a zip of exactly these two folders is paired: A/x.png -> B/x.png


def _paired_from_folders(
    archive: zipfile.ZipFile,
    entries: list[tuple[str, zipfile.ZipInfo]],
    settings: ApiSettings,
    reserve: Reserve,
) -> Converted:
    """Inputs from ``A/``, targets from ``B/``, paired by file name (extension aside)."""
    sides: dict[str, dict[str, zipfile.ZipInfo]] = {"A": {}, "B": {}}
    for folder, info in entries:
        stem = info.filename.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        sides[folder][stem] = info
    only_a, only_b = (
        sorted(set(sides["A"]) - set(sides["B"])),
        sorted(set(sides["B"]) - set(sides["A"])),
    )
    if only_a or only_b:
        unmatched = [f"A/{name}" for name in only_a[:3]] + [f"B/{name}" for name in only_b[:3]]
        raise _invalid(
            "a paired archive (folders A/ and B/) needs the same file names in both: "
            f"{', '.join(unmatched)} {'has' if len(unmatched) == 1 else 'have'} no partner"
        )
    stems = sorted(sides["A"])
    inputs = _decoded_images(archive, [sides["A"][k] for k in stems], settings, reserve)
    targets = _decoded_images(archive, [sides["B"][k] for k in stems], settings, reserve)
    packs.check_pack(targets, None, None, max_classes=settings.max_classes, inputs=inputs)
    return Converted(targets, None, None, inputs)


def _decoded_images(
    archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], settings: ApiSettings, reserve: Reserve
) -> np.ndarray:
    """One array of the images at ``infos``, all of one size and mode, allocated (and reserved)
    from the first image's size."""
    entries = [("", info) for info in infos]
    first_name, first = entries[0][1].filename, _decode(archive, entries[0][1], settings)
    mode = "L" if first.mode in GREY_MODES else "RGB"
    shape = (len(entries), first.height, first.width, *(() if mode == "L" else (3,)))
    decoded = math.prod(shape)
    if decoded > settings.max_uncompressed_bytes:
        raise _too_large(
            f"{len(entries):,} images of {'×'.join(map(str, shape[1:]))} take {decoded:,} "
            f"bytes; at most {settings.max_uncompressed_bytes:,}"
        )
    reserve(decoded)
    images = np.empty(shape, np.uint8)
    for k, (_, info) in enumerate(entries):
        image = first if k == 0 else _decode(archive, info, settings)
        image_mode = "L" if image.mode in GREY_MODES else "RGB"
        if image.size != first.size:
            raise _invalid(
                f"all images must have one size: {info.filename!r} is {image.height}×"
                f"{image.width}, {first_name!r} is {first.height}×{first.width}"
            )
        if image_mode != mode:
            kinds = {"L": "greyscale", "RGB": "colour"}
            raise _invalid(
                f"all images must be greyscale or all colour: {info.filename!r} is "
                f"{kinds[image_mode]}, {first_name!r} is {kinds[mode]}"
            )
        images[k] = image.convert(mode)
    return images
