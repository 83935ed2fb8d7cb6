"""A host's local copies of uploaded packs: downloaded once, shared by its worker processes.

A pack is a file named after a hash of its storage key (an uploaded pack never changes, so its
key names its content) in ``PACK_CACHE_DIR``. A download streams into a temporary file of the
folder (``ObjectStorage.get_file``, never the whole object in memory) and is renamed into place
once complete, so a half-written pack is never read. A lock per pack serialises its download
across processes and is held while a job opens (memory-maps) it; the folder's lock guards
eviction: past ``PACK_CACHE_BYTES``, the least recently used packs are deleted, except any whose
lock is held. A mapped pack that is deleted later stays readable to the process mapping it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from store.storage import ObjectStorage

SUFFIX = ".npz"
PARTIAL_SUFFIX = ".partial"


class PackCache:
    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder, self.max_bytes = folder, max_bytes
        self.folder.mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        return self.folder / (hashlib.sha256(key.encode()).hexdigest()[:40] + SUFFIX)

    @contextlib.contextmanager
    def local(self, storage: ObjectStorage, key: str) -> Iterator[Path]:
        """The local copy of the pack at ``key``, downloaded unless present; it is not evicted
        until the block ends (open or map it inside). ``StorageKeyNotFound`` when missing."""
        path = self.path_of(key)
        with self._lock_of(path):
            if path.exists():
                os.utime(path)  # its last use, which eviction orders by
            else:
                partial = path.with_suffix(PARTIAL_SUFFIX)
                try:
                    storage.get_file(key, partial)
                    partial.replace(path)
                finally:
                    partial.unlink(missing_ok=True)
                self.evict(keep=path)
            yield path

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Delete least recently used packs until the cache holds at most ``max_bytes``; never
        ``keep`` nor a pack another block holds. Returns the deleted paths."""
        deleted = []
        with FileLock(self.folder / ".evict.lock"):
            packs = sorted(self.folder.glob(f"*{SUFFIX}"), key=_last_use)
            total = sum(_size(path) for path in packs)
            for path in packs:
                if total <= self.max_bytes:
                    break
                if path == keep:
                    continue
                try:
                    with self._lock_of(path, timeout=0):
                        size = _size(path)
                        path.unlink(missing_ok=True)
                except Timeout:
                    continue  # in use
                total -= size
                deleted.append(path)
        return deleted

    def _lock_of(self, path: Path, timeout: float = -1) -> FileLock:
        return FileLock(path.with_suffix(".lock"), timeout=timeout)

    def size(self) -> int:
        return sum(_size(path) for path in self.folder.glob(f"*{SUFFIX}"))


def _last_use(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
