"""Private memory of a translation run on a 768 MiB paired pack: memory-mapped against loaded.

``python -m benchmarks.paired_pack_memory [STEPS]`` writes the pack of
``tests/worker/test_large_pack.py`` to a temporary folder and runs that test's child (train,
sample grid, evaluation) on it twice: as the worker does (mapped), and with ``MAPPED_FROM_BYTES``
raised past the pack (loaded into memory).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.worker.test_large_pack import PAIRED_CHILD, PAIRED_PACK_BYTES, write_large_paired_pack

LOADED = "import gan_engine.data.builtins as b; b.MAPPED_FROM_BYTES = 1 << 40\n"


def main(steps: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        pack = Path(folder) / "pairs.npz"
        started = time.monotonic()
        count = write_large_paired_pack(pack, PAIRED_PACK_BYTES)
        print(f"{count} pairs, {pack.stat().st_size:,} bytes, "
              f"written in {time.monotonic() - started:.1f} s")  # fmt: skip
        for name, prefix in (("mapped", ""), ("loaded", LOADED)):
            started = time.monotonic()
            out = subprocess.run(
                [sys.executable, "-c", prefix + PAIRED_CHILD, str(pack), str(steps)],
                capture_output=True,
                text=True,
                check=True,
            )
            report = json.loads(out.stdout.strip().splitlines()[-1])
            report.pop("metrics", None)
            print(name, report, f"wall {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
