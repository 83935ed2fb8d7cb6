"""Object storage: one small interface, a local folder (embedded) and S3/MinIO (production).

Keys are ``/``-separated relative paths (DESIGN.md §4 layout, see the ``*_key`` helpers below).
Both backends refuse keys that could escape their root and raise ``StorageKeyNotFound`` for a
missing key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from store.settings import Settings, get_settings

S3Client = Any  # boto3's client is generated at run time
log = logging.getLogger("ganforge.storage")

CHUNK = 1 << 20
_TMP_PREFIX = ".tmp-"


class StorageError(Exception):
    pass


class StorageKeyNotFound(StorageError, LookupError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no object at key {key!r}")
        self.key = key


class InvalidStorageKey(StorageError, ValueError):
    pass


# --- DESIGN.md §4 key layout -------------------------------------------------------------------


def dataset_pack_key(dataset_id: str) -> str:
    return f"datasets/{dataset_id}/pack.npz"


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def sample_key(job_id: str, step: int) -> str:
    return f"jobs/{job_id}/samples/{step:08d}.png"


def checkpoint_key(job_id: str, step: int) -> str:
    return f"jobs/{job_id}/checkpoints/{step:08d}.pt"


def model_prefix(model_id: str) -> str:
    return f"models/{model_id}/"


def model_weights_key(model_id: str) -> str:
    return f"models/{model_id}/generator.safetensors"


def model_config_key(model_id: str) -> str:
    return f"models/{model_id}/config.json"


def model_discriminator_key(model_id: str) -> str:
    """Models trained since anomaly scores exist keep their discriminator (config says so)."""
    return f"models/{model_id}/discriminator.safetensors"


def validate_key(key: str) -> str:
    """A relative ``a/b/c`` path: no empty, ``.`` or ``..`` segment, no backslash or NUL."""
    if not isinstance(key, str) or not key:
        raise InvalidStorageKey("storage key must be a non-empty string")
    if "\\" in key or "\x00" in key or key.startswith("/"):
        raise InvalidStorageKey(f"invalid storage key {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidStorageKey(f"invalid storage key {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A prefix is a key that may be empty or end with ``/``."""
    if prefix:
        validate_key(prefix.removesuffix("/"))
    return prefix


# --- the interface -----------------------------------------------------------------------------


class ObjectStorage(ABC):
    @abstractmethod
    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None: ...

    @abstractmethod
    def put_file(
        self, key: str, path: str | Path, content_type: str = "application/octet-stream"
    ) -> None:
        """Upload a local file (large checkpoints, dataset packs) without reading it in memory."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def get_file(self, key: str, path: str | Path) -> None:
        """Download to a local file."""

    @abstractmethod
    def iter_chunks(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """Stream an object; raises ``StorageKeyNotFound`` at the call, not at the first chunk."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete one object; a missing key is not an error."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix`` (plain string prefix, as S3), sorted."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` (e.g. ``job_prefix(id)``); returns the count."""
        if not prefix.endswith("/"):
            raise InvalidStorageKey(
                f"delete_prefix needs a folder prefix ending in '/': {prefix!r}"
            )
        keys = self.list(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)

    def check(self) -> None:
        """Raise if the storage cannot be reached (readiness probe)."""
        self.exists("healthz/probe")


# --- a local folder ----------------------------------------------------------------------------


class LocalStorage(ObjectStorage):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidStorageKey(f"storage key {key!r} escapes the storage root")
        return path

    def _write(self, key: str, write: Any) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        self._write(key, lambda out: out.write(data))

    def put_file(
        self, key: str, path: str | Path, content_type: str = "application/octet-stream"
    ) -> None:
        with open(path, "rb") as source:
            self._write(key, lambda out: shutil.copyfileobj(source, out, CHUNK))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StorageKeyNotFound(key) from None

    def get_file(self, key: str, path: str | Path) -> None:
        source = self.path(key)
        if not source.is_file():
            raise StorageKeyNotFound(key)
        shutil.copyfile(source, path)

    def iter_chunks(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        path = self.path(key)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the generator
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StorageKeyNotFound(key) from None

        def chunks() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(chunk_size):
                    yield chunk

        return chunks()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        path = self.path(key)
        path.unlink(missing_ok=True)
        for parent in path.parents:  # tidy empty folders, never the root
            if parent == self.root:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        folder = self.root / prefix.rpartition("/")[0] if "/" in prefix else self.root
        if not folder.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                if name.startswith(_TMP_PREFIX):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)


# --- S3 / MinIO --------------------------------------------------------------------------------


def _is_missing(error: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(error, ClientError):
        return False
    code = str(error.response.get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NotFound")


class S3Storage(ObjectStorage):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        region: str | None = None,
        client: S3Client | None = None,
        timeout_s: float = 10.0,
        max_attempts: int = 3,
    ) -> None:
        """``timeout_s`` bounds each connection and each read, ``max_attempts`` the tries of each
        request (boto3's standard retries, with backoff), so an unreachable endpoint fails after
        a bounded time instead of hanging."""
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = validate_prefix(prefix.strip("/") + "/") if prefix.strip("/") else ""
        self.region = region
        self.client: S3Client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
            config=Config(
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                retries={"max_attempts": max_attempts, "mode": "standard"},
                connect_timeout=timeout_s,
                read_timeout=timeout_s,
            ),
        )

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (tests, compose)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as error:
            if not _is_missing(error) and "NoSuchBucket" not in str(error):
                raise
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region and self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        with contextlib.suppress(self.client.exceptions.BucketAlreadyOwnedByYou):
            self.client.create_bucket(**kwargs)

    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type
        )

    def put_file(
        self, key: str, path: str | Path, content_type: str = "application/octet-stream"
    ) -> None:
        self.client.upload_file(
            str(path), self.bucket, self._key(key), ExtraArgs={"ContentType": content_type}
        )

    def _get(self, key: str) -> Any:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as error:
            if _is_missing(error):
                raise StorageKeyNotFound(key) from None
            raise

    def get_bytes(self, key: str) -> bytes:
        body = self._get(key)["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def get_file(self, key: str, path: str | Path) -> None:
        try:
            self.client.download_file(self.bucket, self._key(key), str(path))
        except Exception as error:
            if _is_missing(error):
                raise StorageKeyNotFound(key) from None
            raise

    def iter_chunks(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        body = self._get(key)["Body"]

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(chunk_size)
            finally:
                body.close()

        return chunks()

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as error:
            if _is_missing(error):
                return False
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            keys.extend(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise InvalidStorageKey(
                f"delete_prefix needs a folder prefix ending in '/': {prefix!r}"
            )
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": self.prefix + key} for key in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)

    def check(self) -> None:
        self.client.head_bucket(Bucket=self.bucket)


# --- from a URL --------------------------------------------------------------------------------


def storage_from_url(url: str | None = None, settings: Settings | None = None) -> ObjectStorage:
    """``file:///abs/path`` (or ``file://relative/path``) or ``s3://bucket[/prefix]``; the S3
    endpoint and credentials come from settings (``S3_*``; unset: boto3's usual chain)."""
    settings = settings or get_settings()
    url = url or settings.storage_url
    if url.startswith("file://"):
        return LocalStorage(unquote(url.removeprefix("file://")))
    if url.startswith("s3://"):
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"STORAGE_URL {url!r} names no bucket: use s3://bucket[/prefix]")
        secret = settings.s3_secret_access_key
        return S3Storage(
            bucket,
            prefix,
            endpoint_url=settings.s3_endpoint_url,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
            region=settings.s3_region,
            timeout_s=settings.storage_timeout_s,
            max_attempts=settings.storage_max_attempts,
        )
    raise ValueError(f"unsupported STORAGE_URL {url!r}: use file:///path or s3://bucket[/prefix]")


_STORAGES: dict[str, ObjectStorage] = {}


def get_storage() -> ObjectStorage:
    """The process-wide storage for ``STORAGE_URL`` (boto3 clients are thread-safe)."""
    url = get_settings().storage_url
    if url not in _STORAGES:
        _STORAGES[url] = storage_from_url(url)
    return _STORAGES[url]


def copy_object(storage: ObjectStorage, source: str, target: str) -> None:
    """Copy one object through a temporary file (a checkpoint may be large)."""
    with tempfile.TemporaryDirectory(prefix="ganforge-copy-") as folder:
        path = Path(folder) / "object"
        storage.get_file(source, path)
        storage.put_file(target, path)


def delete_objects(storage: ObjectStorage, prefix: str, *, what: str) -> int:
    """Delete everything under ``prefix`` once the rows naming it are gone: a failure is logged,
    not raised (the objects are then orphans no row names, only wasted space). The count."""
    try:
        return storage.delete_prefix(prefix)
    except Exception:
        log.warning("%s deleted, but not all of %s could be removed", what, prefix, exc_info=True)
        return 0
