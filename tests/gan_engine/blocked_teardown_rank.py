"""``torchrun ... -m tests.gan_engine.blocked_teardown_rank OUT_DIR``: a rank that, its work
done, holds an object whose finaliser never returns (as freeing a gloo process group now and
then does). Each rank writes ``OUT_DIR/rankR.done`` inside the group's block and would write
``OUT_DIR/rankR.after`` after it."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import torch

from gan_engine import distributed


class NeverFreed:
    def __del__(self) -> None:
        threading.Event().wait()


def main(out: Path) -> None:
    with distributed.process_group(torch.device("cpu")) as world:
        held = NeverFreed()  # noqa: F841 (freed, and blocking, only if the process tears down)
        (out / f"rank{world.rank}.done").write_text("done")
    (out / f"rank{world.rank}.after").write_text("after")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
