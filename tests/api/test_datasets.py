from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from api.services import dataset_files
from gan_engine.data.packs import read_pack
from store.errors import Busy
from store.storage import ObjectStorage, dataset_pack_key
from tests.api.conftest import Account, assert_error, make_settings

RNG = np.random.default_rng(0)


def npz_bytes(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    return buffer.getvalue()


def zip_bytes(entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def grey(side: int = 8) -> np.ndarray:
    return RNG.integers(0, 256, (side, side), dtype=np.uint8)


def rgb(side: int = 8) -> np.ndarray:
    return RNG.integers(0, 256, (side, side, 3), dtype=np.uint8)


def upload(
    client: TestClient, account: Account, data: bytes, filename: str, name: str | None = None
) -> Any:
    form = {"name": name} if name is not None else None
    return client.post(
        "/v1/datasets", headers=account.headers, files={"file": (filename, data)}, data=form
    )


@pytest.fixture
def pack_of(storage: ObjectStorage, tmp_path: Path) -> Callable[[str], Any]:
    def read(dataset_id: str) -> Any:
        path = tmp_path / f"{dataset_id}.npz"
        path.write_bytes(storage.get_bytes(dataset_pack_key(dataset_id)))
        return read_pack(path)

    return read


# --- happy paths -------------------------------------------------------------------------------


def test_npz_with_labels_and_class_names(
    client: TestClient, account: Account, pack_of: Any
) -> None:
    images = RNG.integers(0, 256, (12, 10, 10, 3), dtype=np.uint8)
    labels = np.arange(12) % 3
    data = npz_bytes(images=images, labels=labels, class_names=np.array(["a", "b", "c"]))
    response = upload(client, account, data, "shapes.npz", name="my shapes")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"].startswith("ds_") and body["name"] == "my shapes"
    assert body["n_images"] == 12 and body["image_shape"] == [10, 10, 3]
    assert body["class_names"] == ["a", "b", "c"] and body["num_classes"] == 3
    assert body["size_bytes"] > 0
    pack = pack_of(body["id"])
    assert np.array_equal(pack.images.transpose(0, 2, 3, 1), images)
    assert np.array_equal(pack.labels, labels) and pack.class_names == ["a", "b", "c"]
    assert client.get(f"/v1/datasets/{body['id']}", headers=account.headers).json() == body


def test_npz_without_labels(client: TestClient, account: Account, pack_of: Any) -> None:
    images = RNG.integers(0, 256, (5, 8, 8), dtype=np.uint8)
    body = upload(client, account, npz_bytes(images=images), "plain.npz").json()
    assert body["name"] == "plain" and body["class_names"] is None and body["num_classes"] == 0
    assert body["image_shape"] == [8, 8, 1]
    pack = pack_of(body["id"])
    assert pack.labels is None and np.array_equal(pack.images[:, 0], images)


def test_zip_of_class_folders(client: TestClient, account: Account, pack_of: Any) -> None:
    entries = {
        "pets/dog/b.png": png(grey()),
        "pets/dog/a.png": png(grey()),
        "pets/cat/1.png": png(grey()),
        "pets/cat/2.jpg": jpeg(grey()),
        "pets/.DS_Store": b"junk",
        "__MACOSX/pets/cat/._1.png": b"junk",
    }
    body = upload(client, account, zip_bytes(entries), "pets.zip").json()
    assert body["class_names"] == ["cat", "dog"], body
    assert body["n_images"] == 4 and body["image_shape"] == [8, 8, 1]
    pack = pack_of(body["id"])
    assert pack.labels.tolist() == [0, 0, 1, 1]
    # sorted by class, then name: dog/a.png is the third image
    assert np.array_equal(
        pack.images[2, 0], np.asarray(Image.open(io.BytesIO(entries["pets/dog/a.png"])))
    )


def test_zip_of_colour_images_at_the_top_is_unlabelled(
    client: TestClient, account: Account
) -> None:
    rgba = np.dstack([rgb(), np.full((8, 8), 255, np.uint8)])
    entries = {"1.png": png(rgb()), "2.png": png(rgba), "3.jpeg": jpeg(rgb())}
    body = upload(client, account, zip_bytes(entries, zipfile.ZIP_DEFLATED), "x.zip").json()
    assert (
        body["class_names"] is None and body["image_shape"] == [8, 8, 3] and body["n_images"] == 3
    )


def test_list_get_and_delete(client: TestClient, account: Account, storage: ObjectStorage) -> None:
    ids = [
        upload(client, account, npz_bytes(images=grey()[None].repeat(2, 0)), f"d{k}.npz").json()[
            "id"
        ]
        for k in range(3)
    ]
    page = client.get("/v1/datasets?limit=2", headers=account.headers).json()
    assert [d["id"] for d in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    rest = client.get(f"/v1/datasets?limit=2&after={ids[1]}", headers=account.headers).json()
    assert [d["id"] for d in rest["data"]] == [ids[0]] and rest["has_more"] is False

    assert client.delete(f"/v1/datasets/{ids[0]}", headers=account.headers).status_code == 204
    assert not storage.exists(dataset_pack_key(ids[0]))
    assert_error(client.get(f"/v1/datasets/{ids[0]}", headers=account.headers), 404, "not_found")
    assert_error(client.delete(f"/v1/datasets/{ids[0]}", headers=account.headers), 404)


def test_delete_is_refused_while_an_active_job_uses_it(
    client: TestClient, account: Account, sessions: sessionmaker[Session]
) -> None:
    labels = np.arange(4) % 2
    ds = upload(
        client,
        account,
        npz_bytes(images=RNG.integers(0, 256, (4, 8, 8), dtype=np.uint8), labels=labels),
        "d.npz",
    ).json()
    spec = {
        "dataset": {"id": ds["id"]},
        "model": {"image_size": 8, "width": 8},
        "training": {"steps": 2},
    }
    job = client.post("/v1/jobs", headers=account.headers, json=spec).json()
    error = assert_error(
        client.delete(f"/v1/datasets/{ds['id']}", headers=account.headers), 409, "conflict"
    )
    assert job["id"] in error["message"]
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=account.headers)
    assert client.delete(f"/v1/datasets/{ds['id']}", headers=account.headers).status_code == 204


@pytest.mark.parametrize(("side", "architecture", "size"), [(16, "dcgan", 16), (12, "dcgan", 16)])
def test_an_unset_image_size_follows_the_uploaded_images(
    client: TestClient, account: Account, side: int, architecture: str, size: int
) -> None:
    """A 16x16 upload trains and samples at 16x16, not at a default 32."""
    images = RNG.integers(0, 256, (4, side, side), dtype=np.uint8)
    ds = upload(client, account, npz_bytes(images=images), "small.npz").json()
    spec = {"dataset": {"id": ds["id"]}, "model": {"architecture": architecture, "width": 8}}
    job = client.post("/v1/jobs", headers=account.headers, json=spec)
    assert job.status_code == 202, job.text
    assert job.json()["spec"]["model"]["image_size"] == size


def test_builtins_are_listed(client: TestClient, account: Account) -> None:
    body = client.get("/v1/datasets?builtin=true", headers=account.headers).json()
    by_name = {d["name"]: d for d in body["data"]}
    assert list(by_name) == ["ring8", "grid25", "digits", "mnist", "fashion-mnist",
                             "edges2fashion", "superres-x4-fashion", "superres-x4-mnist",
                             "superres-x4-photos"]  # fmt: skip
    assert by_name["fashion-mnist"]["class_names"][7] == "Sneaker"
    assert by_name["fashion-mnist"]["sample_shape"] == [28, 28, 1]
    assert by_name["ring8"]["kind"] == "points" and by_name["ring8"]["num_classes"] == 8
    assert by_name["grid25"]["num_classes"] == 25 and by_name["digits"]["sample_shape"] == [8, 8, 1]
    assert body["has_more"] is False


def test_another_tenant_sees_nothing(client: TestClient, account: Account, other: Account) -> None:
    ds = upload(client, account, npz_bytes(images=grey()[None].repeat(2, 0)), "d.npz").json()
    assert_error(client.get(f"/v1/datasets/{ds['id']}", headers=other.headers), 404, "not_found")
    assert_error(client.delete(f"/v1/datasets/{ds['id']}", headers=other.headers), 404)
    assert client.get("/v1/datasets", headers=other.headers).json() == {
        "data": [],
        "has_more": False,
    }
    assert_error(
        client.get(f"/v1/datasets?after={ds['id']}", headers=other.headers), 422, param="after"
    )


# --- limits and bad input ----------------------------------------------------------------------


@pytest.fixture
def strict(tmp_path: Path, pg_url: str) -> TestClient:
    settings = make_settings(
        tmp_path,
        pg_url,
        max_upload_bytes=20_000,
        max_images=6,
        max_image_side=16,
        max_zip_entries=10,
        max_zip_ratio=20.0,
        max_uncompressed_bytes=2_000_000,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_too_big_is_413_while_streaming(strict: TestClient, account: Account) -> None:
    data = RNG.integers(0, 256, 30_000, dtype=np.uint8).tobytes()
    assert_error(
        upload(strict, account, b"PK\x03\x04" + data, "big.zip"), 413, "payload_too_large", "file"
    )


def test_too_big_by_content_length_is_413_before_reading(
    strict: TestClient, account: Account
) -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.zip"\r\n\r\n'
        + b"x" * 100_000
        + b"\r\n--b--\r\n"
    )
    headers = account.headers | {"Content-Type": "multipart/form-data; boundary=b"}
    assert_error(
        strict.post("/v1/datasets", headers=headers, content=body), 413, "payload_too_large"
    )


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (png(grey()), "image.png"),
        (b"hello, world", "data.npz"),  # the extension is not enough
        (b"", "empty.zip"),
        (b"\x93NUMPY\x01\x00", "array.npy"),
        (zip_bytes({"a/1.png": png(grey())}), "archive.tar"),
    ],
)
def test_wrong_type_is_415(
    client: TestClient, account: Account, data: bytes, filename: str
) -> None:
    assert_error(upload(client, account, data, filename), 415, "unsupported_media_type", "file")


def test_not_multipart_is_415(client: TestClient, account: Account) -> None:
    assert_error(
        client.post("/v1/datasets", headers=account.headers, json={}), 415, param="Content-Type"
    )


def test_missing_file_is_422(client: TestClient, account: Account) -> None:
    response = client.post(
        "/v1/datasets", headers=account.headers, data={"name": "x"}, files={"other": ("x", b"")}
    )
    assert_error(response, 422, param="other")
    response = client.post("/v1/datasets", headers=account.headers, data={"name": "x"}, files={})
    assert response.status_code in (415, 422)


@pytest.mark.parametrize(
    ("arrays", "needle"),
    [
        ({"images": np.zeros((3, 8, 8), np.float32)}, "uint8"),
        ({"pictures": np.zeros((3, 8, 8), np.uint8)}, "no 'images'"),
        ({"images": np.zeros((3, 8, 8), np.uint8), "labels": np.array([0, 1])}, "one per image"),
        ({"images": np.zeros((3, 8, 8, 2), np.uint8)}, "channels"),
        ({"images": np.zeros((3, 8, 8), np.uint8), "extra": np.zeros(1)}, "unexpected"),
        ({"images": np.zeros((3, 2, 2), np.uint8)}, "height and width"),
    ],
)
def test_bad_npz_is_422(
    client: TestClient, account: Account, arrays: dict[str, Any], needle: str
) -> None:
    error = assert_error(
        upload(client, account, npz_bytes(**arrays), "bad.npz"), 422, "invalid_dataset", "file"
    )
    assert needle in error["message"]


def test_corrupt_npz_is_422(client: TestClient, account: Account) -> None:
    data = bytearray(npz_bytes(images=RNG.integers(0, 256, (3, 8, 8), dtype=np.uint8)))
    data[60:90] = b"\x00" * 30
    assert_error(upload(client, account, bytes(data), "broken.npz"), 422, "invalid_dataset", "file")


def test_a_damaged_zip_is_422(client: TestClient, account: Account) -> None:
    error = assert_error(upload(client, account, b"PK\x03\x04" + b"rubbish" * 20, "x.zip"), 422)
    assert "corrupt" in error["message"]


def test_object_array_is_never_unpickled(client: TestClient, account: Account) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, images=np.array([{"x": 1}], dtype=object))
    assert_error(upload(client, account, buffer.getvalue(), "pickle.npz"), 422, "invalid_dataset")


@pytest.mark.parametrize(
    "name", ["../evil/1.png", "/etc/cat/1.png", "cat/../../1.png", "C:/cat/1.png"]
)
def test_zip_slip_names_are_422(client: TestClient, account: Account, name: str) -> None:
    data = zip_bytes({"cat/1.png": png(grey()), name: png(grey())})
    error = assert_error(upload(client, account, data, "slip.zip"), 422, "invalid_dataset", "file")
    assert "unsafe path" in error["message"]


def test_zip_bomb_ratio_is_413(strict: TestClient, account: Account) -> None:
    data = zip_bytes({"cat/1.png": b"\x00" * 1_500_000}, zipfile.ZIP_DEFLATED)
    assert len(data) < 20_000
    error = assert_error(upload(strict, account, data, "bomb.zip"), 413, "payload_too_large")
    assert "zip bomb" in error["message"]


def test_npz_bomb_is_413(strict: TestClient, account: Account) -> None:
    data = npz_bytes(images=np.zeros((400, 64, 64), np.uint8))
    assert_error(upload(strict, account, data, "bomb.npz"), 413, "payload_too_large")


def test_too_many_zip_entries_is_413(strict: TestClient, account: Account) -> None:
    data = zip_bytes({f"cat/{k}.png": b"" for k in range(11)})
    error = assert_error(upload(strict, account, data, "many.zip"), 413)
    assert "MAX_ZIP_ENTRIES" in error["message"]


def test_too_many_images_is_413(strict: TestClient, account: Account) -> None:
    zipped = zip_bytes({f"cat/{k}.png": png(grey()) for k in range(7)})
    assert "MAX_IMAGES" in assert_error(upload(strict, account, zipped, "many.zip"), 413)["message"]
    packed = npz_bytes(images=np.zeros((7, 8, 8), np.uint8))
    assert "MAX_IMAGES" in assert_error(upload(strict, account, packed, "many.npz"), 413)["message"]


def test_image_too_large_is_422(strict: TestClient, account: Account) -> None:
    zipped = zip_bytes({"cat/1.png": png(grey(32))})
    assert (
        "MAX_IMAGE_SIDE"
        in assert_error(upload(strict, account, zipped, "big.zip"), 422, param="file")["message"]
    )
    packed = npz_bytes(images=np.zeros((2, 32, 32), np.uint8))
    assert (
        "MAX_IMAGE_SIDE" in assert_error(upload(strict, account, packed, "big.npz"), 422)["message"]
    )


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        ({"cat/1.png": b"\x89PNG\r\n\x1a\n garbage"}, "not a readable image"),
        ({"cat/1.png": b"GIF89a...."}, "not a PNG or JPEG"),
        ({"cat/1.gif": png(grey())}, ".png/.jpg/.jpeg"),
        ({"cat/1.png": png(grey(8)), "dog/1.png": png(grey(10))}, "one size"),
        ({"cat/1.png": png(grey()), "dog/1.png": png(rgb())}, "greyscale or all colour"),
        ({"cat/1.png": png(grey()), "2.png": png(grey())}, "different depths"),
        ({"empty/": b""}, "no image"),
    ],
)
def test_bad_zip_content_is_422(
    client: TestClient, account: Account, entries: dict[str, bytes], needle: str
) -> None:
    error = assert_error(
        upload(client, account, zip_bytes(entries), "bad.zip"), 422, "invalid_dataset", "file"
    )
    assert needle in error["message"]


def test_long_name_is_422(client: TestClient, account: Account) -> None:
    data = npz_bytes(images=np.zeros((2, 8, 8), np.uint8))
    assert_error(upload(client, account, data, "d.npz", name="n" * 201), 422, param="name")


def test_storage_down_during_upload_is_503_and_records_nothing(
    client: TestClient, account: Account, storage: ObjectStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import EndpointConnectionError

    def unreachable(*_: Any, **__: Any) -> None:
        raise EndpointConnectionError(endpoint_url="http://minio:9000/ganforge")

    monkeypatch.setattr(storage, "put_file", unreachable)
    response = upload(client, account, npz_bytes(images=grey()[None].repeat(2, 0)), "d.npz")
    error = assert_error(response, 503, "unavailable")
    assert "object storage" in error["message"] and "minio" not in error["message"]
    assert response.headers["Retry-After"] == "5"
    assert client.get("/v1/datasets", headers=account.headers).json()["data"] == []


# --- names and class names: what cannot be answered is never stored ---------------------------


def nothing_stored(client: TestClient, account: Account, storage: ObjectStorage) -> None:
    assert storage.list("datasets/") == []
    listing = client.get("/v1/datasets", headers=account.headers)
    assert listing.status_code == 200 and listing.json()["data"] == [], listing.text


def multipart(name: bytes, filename: bytes, data: bytes) -> tuple[bytes, dict[str, str]]:
    """A form with raw bytes where httpx would encode them."""
    body = (
        b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\n' + name + b"\r\n"
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        b"\r\n" + data + b"\r\n--b--\r\n"
    )
    return body, {"Content-Type": "multipart/form-data; boundary=b"}


@pytest.mark.parametrize("name", ["a\x00b", "tab\there", "bell\x07", "lone \ud800", "x" * 201])
def test_unprintable_or_long_name_is_422(
    client: TestClient, account: Account, storage: ObjectStorage, name: str
) -> None:
    data = npz_bytes(images=np.zeros((2, 8, 8), np.uint8))
    body, headers = multipart(name.encode("utf-8", "surrogatepass"), b"d.npz", data)
    response = client.post("/v1/datasets", headers=account.headers | headers, content=body)
    assert_error(response, 422, param="name")
    nothing_stored(client, account, storage)


def test_a_name_that_is_not_utf8_is_422(
    client: TestClient, account: Account, storage: ObjectStorage
) -> None:
    body, headers = multipart(b"caf\xe9", b"d.npz", npz_bytes(images=np.zeros((2, 8, 8), np.uint8)))
    response = client.post("/v1/datasets", headers=account.headers | headers, content=body)
    assert "UTF-8" in assert_error(response, 422, param="name")["message"]
    nothing_stored(client, account, storage)


def test_a_default_name_keeps_the_printable_part_of_the_file_name(
    client: TestClient, account: Account
) -> None:
    data = npz_bytes(images=np.zeros((2, 8, 8), np.uint8))
    body, headers = multipart(b"", b"my\x01data" + b"x" * 300 + b".npz", data)
    response = client.post("/v1/datasets", headers=account.headers | headers, content=body)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "mydata" + "x" * 194


@pytest.mark.parametrize(
    "names",
    [["ok", "lone \ud800"], ["ok", "nul\x00inside"], ["ok", "new\nline"], ["ok", "x" * 101]],
)
def test_class_names_that_cannot_be_answered_are_refused_and_listing_still_works(
    client: TestClient, account: Account, storage: ObjectStorage, names: list[str]
) -> None:
    data = npz_bytes(images=np.zeros((2, 8, 8), np.uint8), labels=[0, 1], class_names=names)
    assert_error(upload(client, account, data, "d.npz"), 422, "invalid_dataset", "file")
    nothing_stored(client, account, storage)


def test_the_answer_is_built_before_anything_is_stored(
    client: TestClient, account: Account, storage: ObjectStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were a surrogate to slip past validation, the upload would be refused, not stored to
    break every later listing."""
    from gan_engine.data import packs

    monkeypatch.setattr(packs, "checked_class_names", lambda names, **_: list(names))
    data = npz_bytes(
        images=np.zeros((2, 8, 8), np.uint8), labels=[0, 1], class_names=["a", "\ud800"]
    )
    error = assert_error(upload(client, account, data, "d.npz"), 422, "invalid_dataset", "file")
    assert "cannot be returned as JSON" in error["message"]
    nothing_stored(client, account, storage)


def test_zip_folder_names_are_class_names_and_checked_as_such(
    client: TestClient, account: Account, storage: ObjectStorage
) -> None:
    entries = {"cat/1.png": png(grey()), "do\x07g/1.png": png(grey())}
    error = assert_error(upload(client, account, zip_bytes(entries), "x.zip"), 422, param="file")
    assert "printable" in error["message"]
    nothing_stored(client, account, storage)


def test_labels_are_bounded_by_max_classes(tmp_path: Path, pg_url: str, account: Account) -> None:
    settings = make_settings(tmp_path, pg_url, max_classes=3)
    with TestClient(create_app(settings)) as client:
        images = np.zeros((2, 8, 8), np.uint8)
        data = npz_bytes(images=images, labels=[0, 3])
        error = assert_error(upload(client, account, data, "d.npz"), 422, "invalid_dataset")
        assert "at most 3 classes" in error["message"]
        assert upload(client, account, npz_bytes(images=images, labels=[0, 2]), "d.npz").json()[
            "class_names"
        ] == ["0", "1", "2"]
        folders = zip_bytes({f"c{k}/1.png": png(grey()) for k in range(4)})
        assert_error(upload(client, account, folders, "x.zip"), 422, "invalid_dataset", "file")


# --- the decoding budget: shared by concurrent uploads ------------------------------------------

BUDGET = 10_007  # bytes; a size of this test's own, so its budget is too


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (npz_bytes(images=np.zeros((20, 16, 16), np.uint8)), "d.npz"),  # 5,120 bytes decoded
        (zip_bytes({f"cat/{k}.png": png(grey(16)) for k in range(20)}), "d.zip"),
    ],
    ids=["npz", "zip"],
)
def test_an_upload_that_does_not_fit_the_decoding_budget_now_is_503_busy(
    tmp_path: Path, pg_url: str, account: Account, data: bytes, filename: str
) -> None:
    settings = make_settings(tmp_path, pg_url, max_decoding_bytes=BUDGET, max_images=100)
    budget = dataset_files.decoding_budget(BUDGET)
    with TestClient(create_app(settings)) as client:
        with budget.reserve(BUDGET - 5_000):  # another upload being decoded
            response = upload(client, account, data, filename)
            assert "retry" in assert_error(response, 503, "busy", "file")["message"]
            assert response.headers["Retry-After"] == "5"
            assert client.get("/v1/datasets", headers=account.headers).json()["data"] == []
        assert upload(client, account, data, filename).status_code == 201
        assert budget.used == 0


def test_an_upload_larger_than_the_whole_decoding_budget_is_413(
    tmp_path: Path, pg_url: str, account: Account
) -> None:
    settings = make_settings(tmp_path, pg_url, max_decoding_bytes=BUDGET, max_images=100)
    with TestClient(create_app(settings)) as client:
        for data, filename in [
            (npz_bytes(images=np.zeros((40, 16, 16), np.uint8)), "d.npz"),
            (zip_bytes({f"cat/{k}.png": png(grey(16)) for k in range(40)}), "d.zip"),
        ]:
            error = assert_error(upload(client, account, data, filename), 413, param="file")
            assert "MAX_DECODING_BYTES" in error["message"]
    assert dataset_files.decoding_budget(BUDGET).used == 0


def test_the_decoding_budget_is_thread_safe() -> None:
    budget = dataset_files.DecodingBudget(1000)
    granted: list[int] = []

    def take(_: int) -> None:
        for _ in range(200):
            try:
                with budget.reserve(300):
                    granted.append(budget.used)
            except Busy:
                pass

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(take, range(4)))
    assert granted and max(granted) <= 900 and budget.used == 0
