"""A corpus of hostile uploads: each one is refused with a clear 4xx naming the file, creates no
dataset row and no stored object, and (the bombs) costs the API process far less memory than it
declares. The app runs in this process (TestClient), so this process's memory is the API's."""

from __future__ import annotations

import contextlib
import functools
import io
import stat
import struct
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from store.db import session_scope
from store.models import Dataset
from store.storage import ObjectStorage
from tests.api.conftest import Account, assert_error, make_settings
from tests.api.test_datasets import grey, npz_bytes, png, upload, zip_bytes

MIB = 1 << 20
LIMITS = {
    "max_upload_bytes": 2 * MIB,
    "max_uncompressed_bytes": 64 * MIB,
    "max_zip_ratio": 100.0,
    "max_images": 100,
    "max_image_side": 64,
    "max_classes": 10,
}
PEAK_BOUND = 32 * MIB  # what a refused bomb may cost, whatever it declares


# --- making hostile files ----------------------------------------------------------------------


def rewritten(data: bytes, *, method: int | None = None, file_size: int | None = None) -> bytes:
    """``data`` with each entry's compression method and/or uncompressed size rewritten in both
    its local and its central header, which zipfile itself would never write."""
    out = bytearray(data)
    fields = ((b"PK\x03\x04", 8, 22), (b"PK\x01\x02", 10, 24))  # signature, method, size offsets
    found = 0
    for signature, method_at, size_at in fields:
        at = out.find(signature)
        while at != -1:
            found += 1
            if method is not None:
                out[at + method_at : at + method_at + 2] = struct.pack("<H", method)
            if file_size is not None:
                out[at + size_at : at + size_at + 4] = struct.pack("<I", file_size)
            at = out.find(signature, at + 4)
    assert found == 2 * len(zipfile.ZipFile(io.BytesIO(data)).infolist())
    return bytes(out)


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header of width×height RGB pixels over a few bytes of image data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


def npy_declaring(shape: tuple[int, ...], data: bytes, descr: str = "|u1") -> bytes:
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        member, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return member.getvalue() + data


def zeros_zip(name: str, size: int) -> bytes:
    """``size`` zero bytes deflated into one entry (about 1,000 to 1), written in chunks."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open(name, "w") as member,
    ):
        for _ in range(size // MIB):
            member.write(bytes(MIB))
    return buffer.getvalue()


def symlink_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cat/1.png", png(grey()))
        link = zipfile.ZipInfo("cat/2.png")
        link.create_system = 3  # unix
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return buffer.getvalue()


def bad_utf8_name_zip() -> bytes:
    data = zip_bytes({"cat/1.png": png(grey()), "caf\u00e9/1.png": png(grey())})
    assert zipfile.ZipFile(io.BytesIO(data)).infolist()[1].flag_bits & 0x800
    return data.replace("caf\u00e9".encode(), b"caf\xff\xfe")  # as long, not UTF-8


def truncated_member_npz() -> bytes:
    """The images member's deflate stream cut in half; the headers still declare all of it."""
    content = npy_declaring((3, 8, 8), np.random.default_rng(0).bytes(192))
    squeeze = zlib.compressobj(wbits=-15)
    stream = squeeze.compress(content) + squeeze.flush()
    stored = zip_bytes({"images.npy": stream[: len(stream) // 2]})
    return rewritten(stored, method=zipfile.ZIP_DEFLATED, file_size=len(content))


def understated_npz() -> bytes:
    """A 16 MiB member whose headers say it is a 192-byte (3, 8, 8) array."""
    content = npy_declaring((3, 8, 8), bytes(16 * MIB))
    data = zip_bytes({"images.npy": content}, zipfile.ZIP_DEFLATED)
    return rewritten(data, file_size=len(npy_declaring((3, 8, 8), b"")) + 192)


def npz_with(**members: bytes) -> bytes:
    return zip_bytes({f"{key}.npy": value for key, value in members.items()})


def images_npy(count: int = 2) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((count, 8, 8), np.uint8))
    return buffer.getvalue()


def object_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, images=np.array([{"x": 1}], dtype=object))
    return buffer.getvalue()


@dataclass(frozen=True)
class Hostile:
    make: Callable[[], bytes]
    filename: str
    status: int
    needle: str  # in the message
    declared: int = 0  # bytes it claims to decode to: a bound on memory is asserted when set


HOSTILE: dict[str, Hostile] = {
    # compression methods and entry types, from the central directory
    "deflate64": Hostile(
        lambda: rewritten(zip_bytes({"cat/1.png": png(grey())}), method=9),
        "x.zip",
        422,
        "compression method 9",
    ),
    "aes": Hostile(
        lambda: rewritten(zip_bytes({"cat/1.png": png(grey())}), method=99),
        "x.zip",
        422,
        "compression method 99",
    ),
    "npz-deflate64": Hostile(
        lambda: rewritten(npz_with(images=images_npy()), method=9),
        "x.npz",
        422,
        "compression method 9",
    ),
    "bad-utf8-name": Hostile(bad_utf8_name_zip, "x.zip", 422, "not valid UTF-8"),
    "symlink": Hostile(symlink_zip, "x.zip", 422, "symbolic link"),
    # names that escape a folder
    "parent": Hostile(
        lambda: zip_bytes({"cat/1.png": png(grey()), "../x.png": png(grey())}),
        "x.zip",
        422,
        "unsafe path",
    ),
    "absolute": Hostile(lambda: zip_bytes({"/etc/x.png": png(grey())}), "x.zip", 422, "unsafe"),
    "backslash": Hostile(
        lambda: zip_bytes({"cat\\..\\..\\x.png": png(grey())}), "x.zip", 422, "unsafe path"
    ),
    "drive": Hostile(lambda: zip_bytes({"C:/x/1.png": png(grey())}), "x.zip", 422, "unsafe path"),
    # zip bombs
    "bomb-ratio": Hostile(
        lambda: zeros_zip("cat/1.png", 48 * MIB), "x.zip", 413, "zip bomb", 48 * MIB
    ),
    "bomb-declared": Hostile(
        lambda: zeros_zip("cat/1.png", 96 * MIB), "x.zip", 413, "expands to", 96 * MIB
    ),
    "bomb-forged-size": Hostile(
        lambda: rewritten(zip_bytes({"cat/1.png": png(grey())}), file_size=0xFFFFFFF0),
        "x.zip",
        413,
        "expands to",
        0xFFFFFFF0,
    ),
    "npz-understated": Hostile(understated_npz, "x.npz", 422, "Bad CRC-32", 16 * MIB),
    # images that declare more than they hold
    "png-bomb-pillow": Hostile(
        lambda: zip_bytes({"cat/1.png": png_declaring(100_000, 100_000)}),
        "x.zip",
        422,
        "not a readable image",  # Pillow's own decompression-bomb guard
        3 * 100_000**2,
    ),
    "png-bomb-side": Hostile(
        lambda: zip_bytes({"cat/1.png": png_declaring(8_000, 8_000)}),
        "x.zip",
        422,
        "MAX_IMAGE_SIDE",
        3 * 8_000**2,
    ),
    # .npy headers that lie
    "npz-2**40": Hostile(
        lambda: npz_with(images=npy_declaring((2**24, 256, 256), b"")),
        "x.npz",
        422,
        "declares shape (16777216, 256, 256)",
        2**40,
    ),
    "npz-header-lies": Hostile(
        lambda: npz_with(images=npy_declaring((3, 8, 8), bytes(100))),
        "x.npz",
        422,
        "holds 100 bytes",
    ),
    "npz-truncated-member": Hostile(truncated_member_npz, "x.npz", 422, "not a readable"),
    "npz-labels-2**40": Hostile(
        lambda: npz_with(images=images_npy(), labels=npy_declaring((2**37,), b"", "<i8")),
        "x.npz",
        422,
        "'labels' declares shape (137438953472,)",
        2**40,
    ),
    "npz-object": Hostile(object_npz, "x.npz", 422, "unpickling"),
    # labels and class names
    "label-10**12": Hostile(
        lambda: npz_bytes(images=np.zeros((2, 8, 8), np.uint8), labels=[0, 10**12]),
        "x.npz",
        422,
        "at most 10 classes",
        10**12 * 13,  # what "0".."10**12" as default class names would take
    ),
    "class-name-surrogate": Hostile(
        lambda: npz_bytes(
            images=np.zeros((2, 8, 8), np.uint8), labels=[0, 1], class_names=["a", "b\ud800"]
        ),
        "x.npz",
        422,
        "printable",
    ),
    "class-name-control": Hostile(
        lambda: npz_bytes(
            images=np.zeros((2, 8, 8), np.uint8), labels=[0, 1], class_names=["a", "b\x1b[2J"]
        ),
        "x.npz",
        422,
        "printable",
    ),
    "class-name-bytes-not-utf8": Hostile(
        lambda: npz_bytes(
            images=np.zeros((2, 8, 8), np.uint8),
            labels=[0, 1],
            class_names=np.array([b"a", b"\xed\xa0\x80"]),
        ),
        "x.npz",
        422,
        "UTF-8",
    ),
    "class-names-too-many": Hostile(
        lambda: npz_bytes(
            images=np.zeros((2, 8, 8), np.uint8),
            labels=[0, 1],
            class_names=[f"c{k}" for k in range(11)],
        ),
        "x.npz",
        422,
        "at most 10 classes",
    ),
    "class-names-2**40": Hostile(
        lambda: npz_with(
            images=images_npy(),
            labels=npy_declaring((2,), bytes(16), "<i8"),
            class_names=npy_declaring((2**32,), b"", "<U64"),
        ),
        "x.npz",
        422,
        "'class_names' declares shape (4294967296,)",
        2**40,
    ),
    "folder-name-escape": Hostile(
        lambda: zip_bytes({"cat/1.png": png(grey()), "d\x1bg/1.png": png(grey())}),
        "x.zip",
        422,
        "printable",
    ),
}


@functools.cache
def hostile_bytes(case: str) -> bytes:
    return HOSTILE[case].make()


# --- measuring ---------------------------------------------------------------------------------


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


@contextlib.contextmanager
def peak_memory() -> Iterator[list[int]]:
    """The most this process allocated above its start during the block (appended on exit):
    the larger of tracemalloc's peak (Python and numpy allocations, even pages never touched)
    and the rise of the resident-set high-water mark (Pillow's buffers and all else)."""
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from now
    resident = _status_bytes("VmRSS")
    tracemalloc.start()
    peak: list[int] = []
    try:
        yield peak
    finally:
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peak.append(max(traced, _status_bytes("VmHWM") - resident))


# --- the test ----------------------------------------------------------------------------------


@pytest.fixture
def hostile_client(tmp_path: Path, pg_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tmp_path, pg_url, **LIMITS))) as client:
        yield client


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_upload_is_refused_and_changes_nothing(
    hostile_client: TestClient, account: Account, sessions: sessionmaker[Session], case: str
) -> None:
    hostile, data = HOSTILE[case], hostile_bytes(case)
    assert len(data) < LIMITS["max_upload_bytes"]
    # One good upload and its deletion first, so that what the first request of an app costs
    # (lazy imports, connections) is not measured below.
    warm = upload(hostile_client, account, npz_bytes(images=np.zeros((2, 8, 8), np.uint8)), "w")
    hostile_client.delete(f"/v1/datasets/{warm.json()['id']}", headers=account.headers)
    storage: ObjectStorage = hostile_client.app.state.storage  # type: ignore[attr-defined]

    with peak_memory() as peak:
        response = upload(hostile_client, account, data, hostile.filename)
    code = "payload_too_large" if hostile.status == 413 else "invalid_dataset"
    error = assert_error(response, hostile.status, code, "file")
    assert hostile.needle in error["message"]

    with session_scope(sessions) as session:
        rows = session.scalar(
            select(func.count()).select_from(Dataset).where(Dataset.tenant_id == account.tenant_id)
        )
    assert rows == 0
    assert storage.list("datasets/") == []
    listing = hostile_client.get("/v1/datasets", headers=account.headers)
    assert listing.status_code == 200 and listing.json()["data"] == []
    if hostile.declared:
        assert peak[0] < min(PEAK_BOUND, hostile.declared // 4), f"{peak[0]:,} bytes"
