from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from store.settings import Settings
from store.storage import (
    InvalidStorageKey,
    LocalStorage,
    ObjectStorage,
    S3Storage,
    StorageKeyNotFound,
    checkpoint_key,
    dataset_pack_key,
    model_config_key,
    model_weights_key,
    sample_key,
    storage_from_url,
)
from tests.fixtures.services import S3_CREDENTIALS, new_bucket_name


@pytest.fixture(params=["local", "s3", "s3-prefixed"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStorage]:
    if request.param == "local":
        yield LocalStorage(tmp_path / "objects")
        return
    endpoint: str = request.getfixturevalue("s3_endpoint")
    prefix = "tenant/space" if request.param == "s3-prefixed" else ""
    s3 = S3Storage(new_bucket_name(), prefix, endpoint_url=endpoint, **S3_CREDENTIALS)
    s3.ensure_bucket()
    s3.ensure_bucket()  # idempotent
    yield s3


def test_key_layout() -> None:
    assert dataset_pack_key("ds_1") == "datasets/ds_1/pack.npz"
    assert sample_key("job_1", 500) == "jobs/job_1/samples/00000500.png"
    assert checkpoint_key("job_1", 1000) == "jobs/job_1/checkpoints/00001000.pt"
    assert model_weights_key("mdl_1") == "models/mdl_1/generator.safetensors"
    assert model_config_key("mdl_1") == "models/mdl_1/config.json"


def test_put_get_exists_delete(storage: ObjectStorage) -> None:
    key = sample_key("job_a", 10)
    assert not storage.exists(key)
    storage.put_bytes(key, b"\x89PNG first", "image/png")
    storage.put_bytes(key, b"\x89PNG second", "image/png")  # overwrite
    assert storage.exists(key)
    assert storage.get_bytes(key) == b"\x89PNG second"
    assert b"".join(storage.iter_chunks(key, chunk_size=3)) == b"\x89PNG second"
    storage.delete(key)
    storage.delete(key)  # a missing key is not an error
    assert not storage.exists(key)


def test_missing_key_raises_our_error(storage: ObjectStorage, tmp_path: Path) -> None:
    with pytest.raises(StorageKeyNotFound) as caught:
        storage.get_bytes("jobs/nope/samples/00000001.png")
    assert caught.value.key == "jobs/nope/samples/00000001.png"
    with pytest.raises(StorageKeyNotFound):
        storage.iter_chunks("jobs/nope/x")
    with pytest.raises(StorageKeyNotFound):
        storage.get_file("jobs/nope/x", tmp_path / "out")


def test_files_round_trip(storage: ObjectStorage, tmp_path: Path) -> None:
    source = tmp_path / "ckpt.pt"
    payload = os.urandom(3 * 1024 * 1024 + 17)
    source.write_bytes(payload)
    storage.put_file(checkpoint_key("job_b", 1000), source)
    storage.get_file(checkpoint_key("job_b", 1000), tmp_path / "back.pt")
    assert (tmp_path / "back.pt").read_bytes() == payload


def test_list_and_delete_prefix(storage: ObjectStorage) -> None:
    for step in (3, 1, 2):
        storage.put_bytes(sample_key("job_c", step), b"x")
    storage.put_bytes(checkpoint_key("job_c", 1), b"x")
    storage.put_bytes(sample_key("job_c2", 1), b"x")  # a sibling sharing the string prefix
    assert storage.list("jobs/job_c/samples/") == [sample_key("job_c", s) for s in (1, 2, 3)]
    assert len(storage.list("jobs/job_c/")) == 4
    assert storage.list("jobs/job_c") == sorted(
        [*storage.list("jobs/job_c/"), sample_key("job_c2", 1)]
    )
    assert storage.list("models/") == []
    assert storage.delete_prefix("jobs/job_c/") == 4
    assert storage.list("jobs/") == [sample_key("job_c2", 1)]
    with pytest.raises(InvalidStorageKey):
        storage.delete_prefix("jobs/job_c2")  # not a folder prefix
    storage.check()


BAD_KEYS = ["", "/etc/passwd", "../outside", "a/../../b", "a/./b", "a//b", "a\\b", "a/b/", "a\x00b"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_escaping_keys_are_refused(storage: ObjectStorage, key: str) -> None:
    with pytest.raises(InvalidStorageKey):
        storage.put_bytes(key, b"x")
    with pytest.raises(InvalidStorageKey):
        storage.get_bytes(key)


def test_local_refuses_symlinks_out_of_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    local = LocalStorage(tmp_path / "root")
    (local.root / "link").symlink_to(outside)
    with pytest.raises(InvalidStorageKey, match="escapes"):
        local.put_bytes("link/file", b"x")
    assert not any(outside.iterdir())


def test_local_writes_are_atomic_and_tidy(tmp_path: Path) -> None:
    local = LocalStorage(tmp_path)
    local.put_bytes("a/b/c.bin", b"1")
    assert [p.name for p in (tmp_path / "a/b").iterdir()] == ["c.bin"]  # no temp file left
    local.delete("a/b/c.bin")
    assert list(tmp_path.iterdir()) == []  # empty folders removed, root kept


def test_storage_from_url(tmp_path: Path, s3_endpoint: str) -> None:
    local = storage_from_url((tmp_path / "with space").as_uri())
    assert isinstance(local, LocalStorage)
    assert local.root == (tmp_path / "with space").resolve()

    settings = Settings(
        data_dir=tmp_path,
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id="testing",
        s3_secret_access_key="testing",  # type: ignore[arg-type]
        s3_region="us-east-1",
    )
    bucket = new_bucket_name()
    s3 = storage_from_url(f"s3://{bucket}/some/prefix", settings)
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix) == (bucket, "some/prefix/")
    s3.ensure_bucket()
    s3.put_bytes("datasets/ds_1/pack.npz", b"pack")
    raw = s3.client.list_objects_v2(Bucket=bucket)["Contents"]
    assert [item["Key"] for item in raw] == ["some/prefix/datasets/ds_1/pack.npz"]

    with pytest.raises(ValueError, match="unsupported"):
        storage_from_url("ftp://x", settings)
    with pytest.raises(ValueError, match="bucket"):
        storage_from_url("s3://", settings)
