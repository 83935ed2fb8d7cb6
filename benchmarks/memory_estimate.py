"""How close ``gan_engine.memory``'s estimate comes to the memory a run really takes.

Each configuration trains a few steps of Fashion-MNIST in a fresh process on the CPU; the process
reports its resident memory once the data is loaded and its peak after the steps. The difference
is what training itself took (weights, gradients, optimizer state, activations), set against the
estimate of the same (its data term left out, as the data is loaded in both).

    GANFORGE_DATA_DIR=../shared/datasets python benchmarks/memory_estimate.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("dcgan w64 b64 32px", {"model": {"width": 64}, "training": {"batch_size": 64}}),
    ("dcgan w64 b256 32px", {"model": {"width": 64}, "training": {"batch_size": 256}}),
    ("dcgan w128 b128 64px", {"model": {"width": 128, "image_size": 64},
                              "training": {"batch_size": 128}}),
    ("wgan-gp w64 b128 32px", {"preset": "wgan-gp", "model": {"width": 64},
                               "training": {"batch_size": 128}}),
    ("resnet w64 b64 32px", {"model": {"architecture": "resnet", "width": 64},
                             "training": {"batch_size": 64}}),
]  # fmt: skip

CHILD = """
import json, resource, sys
import torch
from gan_engine.memory import estimate_training_memory
from gan_engine.run import load_training_data
from gan_engine.spec import parse_spec
from gan_engine.trainer import Trainer

def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

spec, dataset = load_training_data(parse_spec(json.loads(sys.argv[1])))
estimate = estimate_training_memory(spec, sample_shape=dataset.sample_shape,
    num_classes=dataset.num_classes, num_samples=len(dataset))
torch.set_num_threads(2)
trainer = Trainer(spec, dataset)
before = rss_bytes()
for _ in range(3):
    for _ in range(spec.optimizer.n_critic):
        trainer.discriminator_step(True)
    trainer.generator_step(True)
    trainer.ema.update_parameters(trainer.G)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "peak": peak,
    "estimate": estimate.parameter_bytes + estimate.activation_bytes}))
"""


def measure(overrides: dict[str, Any]) -> dict[str, int]:
    spec = {"dataset": {"builtin": "fashion-mnist"}, **overrides}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec)], check=True, capture_output=True, text=True
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    print(f"{'configuration':24} {'estimate':>10} {'measured':>10} {'measured/estimate':>18}")
    for name, overrides in CONFIGS:
        found = measure(overrides)
        # the model's weights exist before the steps; what the steps add comes on top of them
        measured = found["peak"] - found["before"]
        mib = 2**20
        print(f"{name:24} {found['estimate'] / mib:8.0f} MiB {measured / mib:8.0f} MiB "
              f"{measured / found['estimate']:18.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
