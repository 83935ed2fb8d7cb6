"""Turning an uploaded file into a validated pack: ``.npz`` arrays or a ``.zip`` of class folders.

Everything a user sends is checked before it is trusted: the type by magic bytes, the archive's
entry count, names (no absolute paths or ``..``), declared uncompressed size and compression
ratio (zip bombs), then image count and size before anything is decoded. Members are read through
``zipfile``, which never yields more than an entry's declared size, so the declared sizes bound
memory. Nothing is unpickled.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from api.config import ApiSettings
from gan_engine.data import DatasetError
from gan_engine.data.packs import Pack, read_pack, validate_pack
from store.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

FILE = "file"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an archive; an empty one
NPY_MAGIC = b"\x93NUMPY"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
EXTENSIONS = (".npz", ".zip")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
RATIO_CHECK_FROM = 1 << 20  # archives smaller than this, uncompressed, cannot be bombs
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


@dataclass(frozen=True)
class Converted:
    images: np.ndarray  # uint8 (N, H, W) or (N, H, W, 3): the pack layout
    labels: np.ndarray | None
    class_names: list[str] | None


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_dataset", param=FILE)


def _too_large(message: str) -> PayloadTooLarge:
    return PayloadTooLarge(message, param=FILE)


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


def convert(path: Path, settings: ApiSettings) -> Converted:
    """The images, labels and class names of an uploaded archive, checked and decoded.

    An archive of ``.npy`` members is an ``.npz`` pack; anything else, a zip of images."""
    try:
        with zipfile.ZipFile(path) as archive:
            check_archive(archive, path.stat().st_size, settings)
            members = [i.filename for i in archive.infolist() if not i.is_dir()]
            if not members or not all(m.endswith(".npy") for m in members):
                return images_from_folders(archive, settings)
            check_npz_header(archive, settings)
        return from_pack(read_pack(path))
    except DatasetError as error:
        raise _invalid(str(error)) from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # a damaged archive or member
        raise _invalid(f"the archive is corrupt ({error})") from None


def from_pack(pack: Pack) -> Converted:
    images = pack.images.transpose(0, 2, 3, 1)
    if images.shape[-1] == 1:
        images = images[..., 0]
    return Converted(np.ascontiguousarray(images), pack.labels, pack.class_names)


# --- the archive -------------------------------------------------------------------------------


def check_member_name(name: str) -> None:
    """Refuse names that could escape a folder when extracted (zip slip)."""
    if "\x00" in name or "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise _invalid(f"unsafe path in the archive: {name!r} (absolute or with backslashes)")
    if ".." in name.split("/"):
        raise _invalid(f"unsafe path in the archive: {name!r} ('..' is not allowed)")


def check_archive(archive: zipfile.ZipFile, compressed_bytes: int, settings: ApiSettings) -> None:
    infos = archive.infolist()
    if len(infos) > settings.max_zip_entries:
        raise _too_large(
            f"the archive has {len(infos):,} entries; at most {settings.max_zip_entries:,} "
            "(MAX_ZIP_ENTRIES)"
        )
    total = 0
    for info in infos:
        check_member_name(info.filename)
        if info.flag_bits & 0x1:
            raise _invalid(f"encrypted entries are not supported: {info.filename!r}")
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


def check_npz_header(archive: zipfile.ZipFile, settings: ApiSettings) -> None:
    """Check the images' shape from the .npy header before anything is decompressed in full."""
    if "images.npy" not in archive.namelist():
        raise _invalid("the pack has no 'images' array (uint8, N×H×W or N×H×W×C)")
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    with archive.open("images.npy") as member:
        try:
            reader = readers.get(np.lib.format.read_magic(member))
            if reader is None:  # a newer header version: read_pack checks it in full
                return
            shape, _, dtype = reader(member)
        except (ValueError, OSError, EOFError) as error:
            raise _invalid(f"'images' is not a readable array ({error})") from None
    if dtype.hasobject:
        raise _invalid("'images' is an object array; store plain uint8 arrays")
    if len(shape) in (3, 4):
        check_count_and_side(shape[0], shape[1], shape[2], settings)


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
    data = archive.read(info)
    if not data.startswith((PNG_MAGIC, JPEG_MAGIC)):
        raise _invalid(f"{info.filename!r} is not a PNG or JPEG image (by its content)")
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if max(width, height) > settings.max_image_side:
            raise _invalid(
                f"{info.filename!r} is {height}×{width}; the longest side may be at most "
                f"{settings.max_image_side} pixels (MAX_IMAGE_SIDE): resize the images first"
            )
        image = ImageOps.exif_transpose(image)
        image.load()
    except InvalidRequest:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise _invalid(f"{info.filename!r} is not a readable image ({error})") from None
    return image


def images_from_folders(archive: zipfile.ZipFile, settings: ApiSettings) -> Converted:
    entries, labelled = image_entries(archive)
    if len(entries) > settings.max_images:
        raise _too_large(f"{len(entries):,} images; at most {settings.max_images:,} (MAX_IMAGES)")
    class_names = sorted({folder for folder, _ in entries}) if labelled else None
    arrays: list[np.ndarray] = []
    first: tuple[str, tuple[int, int], str] | None = None
    for _, info in entries:
        image = _decode(archive, info, settings)
        mode = "L" if image.mode in GREY_MODES else "RGB"
        if first is None:
            first = (info.filename, image.size, mode)
            height, width, channels = image.size[1], image.size[0], 1 if mode == "L" else 3
            decoded = len(entries) * height * width * channels
            if decoded > settings.max_uncompressed_bytes:
                raise _too_large(
                    f"{len(entries):,} images of {height}×{width}×{channels} take {decoded:,} "
                    f"bytes; at most {settings.max_uncompressed_bytes:,}"
                )
        elif image.size != first[1]:
            raise _invalid(
                f"all images must have one size: {info.filename!r} is {image.size[1]}×"
                f"{image.size[0]}, {first[0]!r} is {first[1][1]}×{first[1][0]}"
            )
        elif mode != first[2]:
            kinds = {"L": "greyscale", "RGB": "colour"}
            raise _invalid(
                f"all images must be greyscale or all colour: {info.filename!r} is "
                f"{kinds[mode]}, {first[0]!r} is {kinds[first[2]]}"
            )
        arrays.append(np.asarray(image.convert(mode), dtype=np.uint8))
    images = np.stack(arrays)
    labels = None
    if class_names is not None:
        index = {name: k for k, name in enumerate(class_names)}
        labels = np.array([index[folder] for folder, _ in entries], dtype=np.int64)
    names = None if class_names is None else np.array(class_names)
    try:
        validate_pack(images, labels, names)
    except DatasetError as error:
        raise _invalid(str(error)) from None
    return Converted(images, labels, class_names)
