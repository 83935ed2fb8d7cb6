"""A pack several times larger than the bound trains with the worker's memory under the bound.

The pack (3 GiB of 64×64 RGB uint8 images) is written straight to a local object store, fetched
through the worker's pack cache and trained on by the engine in a subprocess (at image size 32:
every batch is resized as it is read). Bounded: its peak private memory (anonymous pages,
sampled from /proc every 10 ms: what the worker needs and cannot give back) under
``PEAK_PRIVATE_BOUND``, its peak resident memory (``getrusage``: the pages of the mapped pack it
touched included, which the kernel can reclaim) under ``PEAK_RSS_BOUND``, below the pack's size
(the pack is never loaded whole), and its loader workers' peak resident memory under the private
bound. Alone the training process peaks at about 0.9 GB resident; in one run of the whole suite
its resident peak read 2.0 GB (file pages the kernel left mapped), hence the two bounds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gan_engine.data.builtins import load_pack_dataset
from gan_engine.data.packs import write_pack

GIB = 1 << 30
IMAGE_SHAPE = (64, 64, 3)
PACK_BYTES = 3 * GIB
PEAK_PRIVATE_BOUND = int(1.5 * GIB)
PEAK_RSS_BOUND = int(2.5 * GIB)
KEY = "datasets/ds_large/pack.npz"
STEPS = 12

CHILD = textwrap.dedent(
    """
    import json, resource, sys, threading, time
    from pathlib import Path

    peak_private = [0]

    def sample_private_memory() -> None:
        while True:
            with open("/proc/self/status") as status:
                fields = dict(line.split(":", 1) for line in status)
            private = sum(int(fields[k].split()[0]) * 1024 for k in ("RssAnon", "RssShmem"))
            peak_private[0] = max(peak_private[0], private)
            time.sleep(0.01)

    threading.Thread(target=sample_private_memory, daemon=True).start()
    from gan_engine.run import build_trainer, load_training_data
    from gan_engine.spec import parse_spec
    from store.storage import LocalStorage
    from worker.memory import check_estimate
    from worker.pack_cache import PackCache

    root, cache_dir, key, STEPS = *sys.argv[1:4], int(sys.argv[4])
    spec = parse_spec({
        "dataset": {"id": "ds_large"},
        "model": {"width": 8, "latent_dim": 16, "image_size": 32},
        "training": {"steps": STEPS, "batch_size": 32, "device": "cpu"},
        "monitor": {"log_every": 10, "sample_every": STEPS, "eval_every": STEPS,
                    "eval_samples": 100, "checkpoint_every": STEPS},
    })
    cache = PackCache(Path(cache_dir), 8 << 30)
    with cache.local(LocalStorage(root), key) as path:
        spec, dataset = load_training_data(spec, pack_path=path)
    check_estimate(spec, dataset, budget_bytes=1 << 30)
    trainer = build_trainer(spec, dataset)
    result = trainer.fit()
    state = trainer.state_dict()
    del trainer  # its loader's workers exit and are waited for: RUSAGE_CHILDREN counts them
    import gc; gc.collect()
    print(json.dumps({
        "step": result.step,
        "mapped": dataset.mapped is not None,
        "metrics": sorted(result.summary),
        "drawn": state["rng"]["data"]["drawn"],
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_private": peak_private[0],
        "peak_rss_loader_workers": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }))
    """
)


def write_large_pack(path: Path, nbytes: int) -> int:
    """An uncompressed pack of ``nbytes`` of images (a cheap varying fill), written in one pass
    without the array ever in memory, as ``np.savez`` lays it out. Returns the image count."""
    count = nbytes // int(np.prod(IMAGE_SHAPE))
    header = {"descr": "|u1", "fortran_order": False, "shape": (count, *IMAGE_SHAPE)}
    chunk_images = 1024
    base = np.random.default_rng(0).integers(0, 256, (chunk_images, *IMAGE_SHAPE), np.uint8)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive,
        archive.open("images.npy", "w", force_zip64=True) as member,
    ):
        np.lib.format.write_array_header_1_0(member, header)
        for start in range(0, count, chunk_images):
            member.write((base[: min(chunk_images, count - start)] + start % 251).data)
    return count


@pytest.mark.large_data
def test_a_pack_larger_than_memory_trains_under_the_bound(tmp_path: Path) -> None:
    storage_root, cache_dir = tmp_path / "storage", tmp_path / "cache"
    pack = storage_root / KEY
    pack.parent.mkdir(parents=True)
    try:
        count = write_large_pack(pack, PACK_BYTES)
        assert pack.stat().st_size > 2 * PEAK_PRIVATE_BOUND and pack.stat().st_size > PEAK_RSS_BOUND
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(storage_root), str(cache_dir), KEY, str(STEPS)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert child.returncode == 0, child.stderr[-3000:]
        report = json.loads(child.stdout.strip().splitlines()[-1])
        cached = list(cache_dir.glob("*.npz"))
        assert [p.stat().st_size for p in cached] == [pack.stat().st_size]
    finally:
        pack.unlink(missing_ok=True)
        for cached_pack in cache_dir.glob("*.npz"):
            cached_pack.unlink()
    assert count * int(np.prod(IMAGE_SHAPE)) <= PACK_BYTES
    assert report["step"] == STEPS and report["mapped"] and report["drawn"] == STEPS
    assert "fid" in report["metrics"]
    assert 0 < report["peak_private"] < PEAK_PRIVATE_BOUND, report
    assert report["peak_rss"] < PEAK_RSS_BOUND, report
    assert report["peak_rss_loader_workers"] < PEAK_PRIVATE_BOUND, report


def test_small_packs_stay_in_memory_and_old_compressed_packs_still_read(tmp_path: Path) -> None:
    """The fast path: a pack under MAPPED_FROM_BYTES is loaded, whether stored or deflated."""
    images = np.arange(6 * 8 * 8, dtype=np.uint8).reshape(6, 8, 8)
    stored, deflated = tmp_path / "stored.npz", tmp_path / "deflated.npz"
    write_pack(stored, images, [0, 1, 0, 1, 0, 1])
    np.savez_compressed(deflated, images=images, labels=np.array([0, 1, 0, 1, 0, 1]))
    with zipfile.ZipFile(stored) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    for path in (stored, deflated):
        dataset = load_pack_dataset(path)
        assert dataset.mapped is None
        assert np.array_equal(dataset.data[:, 0].numpy(), images)


PAIRED_TARGET_SHAPE, PAIRED_INPUT_SHAPE = (64, 64, 3), (16, 16, 3)
PAIRED_PACK_BYTES = 768 << 20  # above MAPPED_FROM_BYTES: mapped by the real rule
PAIRED_STEPS = 6

PAIRED_CHILD = textwrap.dedent(
    """
    import json, sys, threading, time

    peak_private = [0]

    def private_memory() -> int:
        with open("/proc/self/status") as status:
            fields = dict(line.split(":", 1) for line in status)
        return sum(int(fields[k].split()[0]) * 1024 for k in ("RssAnon", "RssShmem"))

    def sample_private_memory() -> None:
        while True:
            peak_private[0] = max(peak_private[0], private_memory())
            time.sleep(0.01)

    from gan_engine.run import build_trainer, load_training_data
    from gan_engine.spec import parse_spec

    path, steps = sys.argv[1], int(sys.argv[2])
    spec = parse_spec({
        "task": "translation",
        "dataset": {"path": path},
        "model": {"width": 8, "image_size": 32},
        "training": {"steps": steps, "batch_size": 16, "device": "cpu"},
        "monitor": {"log_every": 10, "sample_every": steps, "eval_every": steps,
                    "eval_samples": 100, "checkpoint_every": steps, "metrics": ["fid"]},
    })
    spec, dataset = load_training_data(spec)
    trainer = build_trainer(spec, dataset)
    loaded = private_memory()  # the networks built, the pack mapped: what training adds is next
    threading.Thread(target=sample_private_memory, daemon=True).start()
    result = trainer.fit()
    print(json.dumps({
        "step": result.step,
        "mapped": dataset.mapped is not None,
        "metrics": sorted(result.summary),
        "loaded_private": loaded,
        "peak_private": peak_private[0],
    }))
    """
)


def write_large_paired_pack(path: Path, nbytes: int) -> int:
    """An uncompressed paired pack of ``nbytes`` of inputs and targets (a cheap varying fill),
    written a chunk at a time as ``np.savez`` lays it out. Returns the pair count."""
    pair_bytes = int(np.prod(PAIRED_TARGET_SHAPE)) + int(np.prod(PAIRED_INPUT_SHAPE))
    count, chunk_images = nbytes // pair_bytes, 1024
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for key, shape in (("inputs", PAIRED_INPUT_SHAPE), ("targets", PAIRED_TARGET_SHAPE)):
            header = {"descr": "|u1", "fortran_order": False, "shape": (count, *shape)}
            base = rng.integers(0, 256, (chunk_images, *shape), np.uint8)
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, header)
                for start in range(0, count, chunk_images):
                    member.write((base[: min(chunk_images, count - start)] + start % 251).data)
    return count


@pytest.mark.large_data
def test_a_large_paired_pack_trains_mapped_without_loading_it(tmp_path: Path) -> None:
    """Translation on a paired pack above MAPPED_FROM_BYTES: training, the sample grid and the
    evaluation (FID, the bicubic baseline) add to the process's private memory less than half
    the pack, which loading it would add whole."""
    pack = tmp_path / "pairs.npz"
    try:
        write_large_paired_pack(pack, PAIRED_PACK_BYTES)
        child = subprocess.run(
            [sys.executable, "-c", PAIRED_CHILD, str(pack), str(PAIRED_STEPS)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        pack.unlink(missing_ok=True)
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert report["step"] == PAIRED_STEPS and report["mapped"], report
    assert {"fid", "bicubic_fid", "psnr"} <= set(report["metrics"]), report
    assert report["peak_private"] - report["loaded_private"] < PAIRED_PACK_BYTES // 2, report
