"""Peak memory of the API process while it takes N concurrent maximal uploads (loopback only).

    .venv/bin/python -m benchmarks.upload_memory [--concurrency 4] [--kind npz|zip]
        [--max-uncompressed-mib 64] [--max-decoding-mib 256]

Starts the API as ``ganforge api`` does (uvicorn, one process) on a SQLite database, the
filesystem broker and a local storage folder, all in a temp DATA_DIR, with the upload limits
lowered through the environment to keep the run short: MAX_UNCOMPRESSED_BYTES (default here
64 MiB instead of 1 GiB), MAX_UPLOAD_BYTES just above it, MAX_DECODING_BYTES (256 MiB instead of
2 GiB). A maximal upload decodes to MAX_UNCOMPRESSED_BYTES: an .npz of 256×256 RGB noise, or a
zip of as many 256×256 RGB PNGs. The script sends one small upload (warm-up), reads the server's
idle VmRSS, resets its VmHWM (/proc/PID/clear_refs), sends N maximal uploads at once, and reports
the peak (VmHWM, and VmRSS sampled every 10 ms) above idle, and what each upload was answered.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import subprocess
import tempfile
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from benchmarks.local_services import free_port

MIB = 1 << 20
SIDE = 256
NPY_OVERHEAD = 4096  # room for the .npy headers and zip entries within the limit


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


def maximal_upload(kind: str, decoded_bytes: int) -> tuple[bytes, str, int]:
    """(file, name, decoded bytes): images that decode to at most ``decoded_bytes``."""
    rng = np.random.default_rng(0)
    per_image = SIDE * SIDE * 3
    if kind == "npz":
        shape = ((decoded_bytes - NPY_OVERHEAD) // per_image, SIDE, SIDE, 3)
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, images=images)
        return buffer.getvalue(), "max.npz", images.size
    # Low-entropy noise, so the PNGs (whose sizes also count against the limit) are smaller.
    count = decoded_bytes // per_image
    tile = io.BytesIO()
    Image.fromarray(rng.integers(0, 16, (SIDE, SIDE, 3), dtype=np.uint8)).save(tile, format="PNG")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for k in range(count):
            archive.writestr(f"noise/{k:05d}.png", tile.getvalue())
    return buffer.getvalue(), "max.zip", count * per_image


class Sampler(threading.Thread):
    """The largest VmRSS of ``pid`` seen every 10 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kib, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
            time.sleep(0.01)


async def burst(url: str, key: str, data: bytes, filename: str, n: int) -> list[int]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:

        async def one(k: int) -> int:
            files = {"file": (filename, data)}
            response = await client.post("/v1/datasets", files=files, data={"name": f"max{k}"})
            if response.status_code not in (201, 503):
                raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
            return response.status_code

        return list(await asyncio.gather(*(one(k) for k in range(n))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4, help="uploads sent at once")
    parser.add_argument("--kind", choices=("npz", "zip"), default="npz")
    parser.add_argument("--max-uncompressed-mib", type=int, default=64)
    parser.add_argument("--max-decoding-mib", type=int, default=256)
    args = parser.parse_args()

    from ganforge.cli.server import api_command
    from store.auth import create_tenant_with_key
    from store.db import dispose_engines, get_sessionmaker, session_scope
    from store.migrate import upgrade

    data_dir = Path(tempfile.mkdtemp(prefix="ganforge-upload-bench-"))
    database_url = f"sqlite:///{data_dir / 'ganforge.db'}"
    limit = args.max_uncompressed_mib * MIB
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "BROKER_URL": "filesystem://",
        "STORAGE_URL": (data_dir / "objects").as_uri(),
        "REAPER_ENABLED": "false",
        "MAX_UNCOMPRESSED_BYTES": str(limit),
        "MAX_UPLOAD_BYTES": str(limit + 8 * MIB),
        "MAX_DECODING_BYTES": str(args.max_decoding_mib * MIB),
    }
    data, filename, decoded = maximal_upload(args.kind, limit)
    port = free_port()
    api: subprocess.Popen[bytes] | None = None
    try:
        upgrade(database_url)
        with session_scope(get_sessionmaker(database_url)) as session:
            _, _, key = create_tenant_with_key(session, name="bench")
        dispose_engines()
        with open(data_dir / "api.log", "wb") as log:
            api = subprocess.Popen(
                api_command("127.0.0.1", port),
                cwd=data_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if api.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start:\n{(data_dir / 'api.log').read_text()}")
            time.sleep(0.2)

        small, small_name, _ = maximal_upload(args.kind, 4 * SIDE * SIDE * 3 + NPY_OVERHEAD)
        asyncio.run(burst(url, key, small, small_name, 1))  # warm-up: imports, connections
        idle = status_kib(api.pid, "VmRSS")
        Path(f"/proc/{api.pid}/clear_refs").write_text("5")  # VmHWM restarts from now
        sampler = Sampler(api.pid)
        sampler.start()
        start = time.perf_counter()
        answers = asyncio.run(burst(url, key, data, filename, args.concurrency))
        wall = time.perf_counter() - start
        sampler.done.set()
        sampler.join()
        hwm = status_kib(api.pid, "VmHWM")

        counts = ", ".join(f"{n}× {status}" for status, n in sorted(Counter(answers).items()))
        print(
            f"{args.concurrency} concurrent {args.kind} uploads of {len(data) / MIB:.1f} MiB, "
            f"each decoding to {decoded / MIB:.1f} MiB (MAX_UNCOMPRESSED_BYTES "
            f"{args.max_uncompressed_mib} MiB, MAX_DECODING_BYTES {args.max_decoding_mib} MiB): "
            f"{counts} in {wall:.1f} s"
        )
        print(
            f"API process RSS: idle {idle / 1024:.0f} MiB, peak {hwm / 1024:.0f} MiB (VmHWM; "
            f"sampled VmRSS {sampler.peak_kib / 1024:.0f} MiB), "
            f"{(hwm - idle) / 1024:.0f} MiB above idle"
        )
    finally:
        if api is not None and api.poll() is None:
            api.terminate()
            try:
                api.wait(timeout=15)
            except subprocess.TimeoutExpired:
                api.kill()
                api.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
