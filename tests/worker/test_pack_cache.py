"""The host's pack cache: one download per pack across processes, LRU eviction past its bound,
never a pack that a job is opening."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from store.storage import LocalStorage, StorageKeyNotFound
from worker.pack_cache import PackCache


class CountingStorage(LocalStorage):
    """Local storage that appends a line to ``log`` for every download."""

    def __init__(self, root: Path, log: Path) -> None:
        super().__init__(root)
        self.log = log

    def get_file(self, key: str, path: str | Path) -> None:
        with open(self.log, "a") as log:
            log.write(f"{key}\n")
        super().get_file(key, path)


def put(root: Path, key: str, size: int) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))


def _fetch(root: str, log: str, folder: str, key: str, out: str) -> None:
    cache = PackCache(Path(folder), 1 << 20)
    with cache.local(CountingStorage(Path(root), Path(log)), key) as path:
        Path(out).write_bytes(path.read_bytes())


def test_a_pack_is_downloaded_once_by_processes_that_want_it_at_once(tmp_path: Path) -> None:
    root, log, folder = tmp_path / "storage", tmp_path / "downloads.log", tmp_path / "cache"
    put(root, "datasets/ds_a/pack.npz", 200_000)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_fetch,
            args=(
                str(root),
                str(log),
                str(folder),
                "datasets/ds_a/pack.npz",
                str(tmp_path / f"{n}"),
            ),
        )
        for n in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert log.read_text().splitlines() == ["datasets/ds_a/pack.npz"]
    original = (root / "datasets/ds_a/pack.npz").read_bytes()
    assert all((tmp_path / f"{n}").read_bytes() == original for n in range(3))
    assert not list(folder.glob("*.partial"))


def test_least_recently_used_packs_go_first_but_never_one_in_use(tmp_path: Path) -> None:
    root, log = tmp_path / "storage", tmp_path / "downloads.log"
    storage, cache = CountingStorage(root, log), PackCache(tmp_path / "cache", 250_000)
    for name in "abcd":
        put(root, f"datasets/ds_{name}/pack.npz", 100_000)
    key = "datasets/ds_{}/pack.npz".format
    with cache.local(storage, key("a")):
        pass
    with cache.local(storage, key("b")) as held:
        with cache.local(storage, key("a")):  # a is now more recently used than b
            pass
        with cache.local(storage, key("c")):  # over the bound: b is oldest but in use
            pass
        assert held.exists() and not cache.path_of(key("a")).exists()
        assert cache.size() == 200_000
    with cache.local(storage, key("d")):  # b is no longer in use and now the oldest
        pass
    assert not cache.path_of(key("b")).exists() and cache.path_of(key("c")).exists()
    with cache.local(storage, key("c")):  # a hit: no download
        pass
    assert log.read_text().splitlines() == [key(n) for n in "abcd"]


def test_a_missing_pack_leaves_nothing_behind(tmp_path: Path) -> None:
    cache = PackCache(tmp_path / "cache", 1 << 20)
    with (
        pytest.raises(StorageKeyNotFound),
        cache.local(LocalStorage(tmp_path), "datasets/x/pack.npz"),
    ):
        pass
    assert not list((tmp_path / "cache").glob("*.np*")) and not list(
        (tmp_path / "cache").glob("*.partial")
    )
