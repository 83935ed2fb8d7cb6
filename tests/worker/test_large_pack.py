"""A pack several times larger than the bound trains with the worker's memory under the bound.

The pack (3 GiB of 64×64 RGB uint8 images) is written straight into the embedded service's
object store as an uploaded dataset, and a job on it is run by the worker's own ``run_job`` in a
subprocess: claim, the pack fetched through the worker's pack cache, training at image size 32
(every batch resized as it is read), evaluation, checkpoint, export and the final write.
Bounded: that process's peak private memory (anonymous pages, sampled from /proc every 10 ms:
what the worker needs and cannot give back) under ``PEAK_PRIVATE_BOUND``, its peak resident
memory (``getrusage``: the pages of the mapped pack it touched included, which the kernel can
reclaim) under ``PEAK_RSS_BOUND``, below the pack's size (the pack is never loaded whole), and
its loader workers' peak resident memory under the private bound. The engine alone peaked at
about 0.9 GB resident; in one run of the whole suite its resident peak read 2.0 GB (file pages
the kernel left mapped), hence the two bounds.
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
from gan_engine.spec import parse_spec
from store.db import session_scope
from store.models import Dataset as DatasetRow
from store.models import new_id
from store.storage import dataset_pack_key
from tests.worker.conftest import Service

GIB = 1 << 30
IMAGE_SHAPE = (64, 64, 3)
PACK_BYTES = 3 * GIB
PEAK_PRIVATE_BOUND = int(1.5 * GIB)
PEAK_RSS_BOUND = int(2.5 * GIB)
STEPS = 12

PRIVATE_MEMORY_SAMPLER = """
import threading, time

peak_private = [0]

def sample_private_memory() -> None:
    while True:
        with open("/proc/self/status") as status:
            fields = dict(line.split(":", 1) for line in status)
        private = sum(int(fields[k].split()[0]) * 1024 for k in ("RssAnon", "RssShmem"))
        peak_private[0] = max(peak_private[0], private)
        time.sleep(0.01)

threading.Thread(target=sample_private_memory, daemon=True).start()
"""

WORKER_CHILD = PRIVATE_MEMORY_SAMPLER + textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from store.settings import Settings
    from worker.runner import run_job

    data_dir, ganforge_data_dir, job_id = sys.argv[1:4]
    settings = Settings(data_dir=Path(data_dir), database_url="", broker_url="", storage_url="",
                        ganforge_data_dir=Path(ganforge_data_dir), lease_s=30, heartbeat_s=0.5,
                        _env_file=None)
    outcome = run_job(job_id, settings=settings)
    import gc; gc.collect()
    print(json.dumps({
        "status": outcome.status,
        "error": outcome.error_code,
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
def test_the_worker_trains_a_pack_larger_than_memory_under_the_bound(embedded: Service) -> None:
    dataset_id = new_id("ds")
    pack = embedded.storage.path(dataset_pack_key(dataset_id))  # type: ignore[attr-defined]
    pack.parent.mkdir(parents=True)
    cache_dir = embedded.settings.data_dir / "pack-cache"  # the default, DATA_DIR/pack-cache
    try:
        count = write_large_pack(pack, PACK_BYTES)
        assert pack.stat().st_size > 2 * PEAK_PRIVATE_BOUND and pack.stat().st_size > PEAK_RSS_BOUND
        with session_scope(embedded.sessions) as session:
            session.add(
                DatasetRow(
                    id=dataset_id, tenant_id=embedded.tenant_id, name="large",
                    storage_key=dataset_pack_key(dataset_id), n_images=count,
                    image_shape=list(IMAGE_SHAPE), class_names=None,
                    size_bytes=pack.stat().st_size,
                )
            )  # fmt: skip
        spec = parse_spec({
            "dataset": {"id": dataset_id},
            "model": {"width": 8, "latent_dim": 16, "image_size": 32},
            "training": {"steps": STEPS, "batch_size": 32, "device": "cpu"},
            "monitor": {"log_every": 4, "sample_every": STEPS, "eval_every": STEPS,
                        "eval_samples": 100, "checkpoint_every": STEPS},
        })  # fmt: skip
        job_id = embedded.submit(spec)
        child = subprocess.run(
            [sys.executable, "-c", WORKER_CHILD, str(embedded.settings.data_dir),
             str(embedded.settings.ganforge_data_dir), job_id],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert child.returncode == 0, child.stderr[-3000:]
        report = json.loads(child.stdout.strip().splitlines()[-1])
        cached = list(Path(cache_dir).glob("*.npz"))
        assert [p.stat().st_size for p in cached] == [pack.stat().st_size]
    finally:
        pack.unlink(missing_ok=True)
        for cached_pack in Path(cache_dir).glob("*.npz"):
            cached_pack.unlink()
    assert (report["status"], report["error"]) == ("succeeded", None), report
    job = embedded.job(job_id)
    assert job.step == STEPS and job.model_id is not None
    assert "fid" in (job.summary_metrics or {})
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
