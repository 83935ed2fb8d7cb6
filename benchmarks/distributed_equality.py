"""2 gloo ranks against 1 process at the same global batch (docs/distributed.md's table).

    PYTHONPATH=. python benchmarks/distributed_equality.py OUT_DIR

Each case: the engine CLI's 2-rank run of a tiny ring8 spec, and the same spec trained in this
process; prints the largest absolute gap over the logged losses, D outputs and gradient norms.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.gan_engine.test_distributed import (
    curve,
    folder_curve,
    one_process,
    points_spec,
    train_ranks,
)

CASES = {
    "no normalisation": {"model": {"d_norm": "none"}},
    "LayerNorm, wgan_gp, pack 2, instance noise": {
        "model": {"pack": 2},
        "loss": {"kind": "wgan_gp", "instance_noise": 0.1},
    },
    "BatchNorm, sync_batchnorm": {"model": {"d_norm": "batch"}, "sync_batchnorm": True},
    "BatchNorm per rank": {"model": {"d_norm": "batch"}},
}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for index, (name, overrides) in enumerate(CASES.items()):
        spec = points_spec(2, **overrides)
        train_ranks(spec, out / f"case{index}")
        ranks, one = folder_curve(out / f"case{index}"), one_process(spec)[1]
        gaps = (curve([ranks[s] for s, _ in one.steps]) - curve([m for _, m in one.steps])).abs()
        print(f"{name}: largest gap {float(gaps.max()):.2g}, on the losses "
              f"{float(gaps[:, :2].max()):.2g}")  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]))
