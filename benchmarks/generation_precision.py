"""How faithful bf16 sampling is: the same generator, the same z, float32 against bf16 autocast.

For a trained class-conditional Fashion-MNIST generator (``fashion_mnist.py --out DIR`` keeps
them), samples ``--per-class`` images of every class both ways and reports the PSNR of the bf16
images against the float32 ones, the share of pixels that differ, the evaluator's class accuracy
on each set, and the forward time of 64 images in each precision.

    GANFORGE_DATA_DIR=../shared/datasets python benchmarks/generation_precision.py \\
        runs/fashion-bench/seed1 runs/fashion-bench/seed2 runs/fashion-bench/seed3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from gan_engine.artifacts import GeneratorArtifact
from gan_engine.data import load_dataset
from gan_engine.evaluation.evaluator import FolderEvaluatorCache, load_or_train_evaluator
from gan_engine.spec import DatasetSpec


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def forward_ms(artifact: GeneratorArtifact, rounds: int = 30) -> float:
    z, labels = artifact.latents(64, seed=0), torch.arange(64) % 10
    artifact.forward(z, labels)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        artifact.forward(z, labels)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="folders holding generator artifacts")
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/evaluators"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    train = load_dataset(DatasetSpec(builtin="fashion-mnist"), image_size=32)
    evaluator = load_or_train_evaluator(
        train, cache=FolderEvaluatorCache(args.cache_dir), device=torch.device("cpu")
    )
    print("| generator | PSNR bf16 vs fp32 (dB) | pixels differing | class accuracy fp32 | "
          "class accuracy bf16 | forward 64 fp32 (ms) | forward 64 bf16 (ms) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        exact = GeneratorArtifact.load(run, precision="off")
        fast = GeneratorArtifact.load(run, precision="bf16")
        labels = torch.arange(exact.config.num_classes).repeat_interleave(args.per_class)
        z = exact.latents(len(labels), seed=123)
        a = exact.samples(exact.forward(z, labels), labels).data
        b = fast.samples(fast.forward(z, labels), labels).data
        accuracy = []
        for images in (a, b):
            x = torch.from_numpy(images).float()[:, None] / 127.5 - 1
            accuracy.append(float((evaluator.predict(x).cpu() == labels).float().mean()))
        timing = f"{forward_ms(exact):.1f} | {forward_ms(fast):.1f}"
        print(f"| {run} | {psnr(a, b):.1f} | {np.mean(a != b):.2%} | {accuracy[0]:.3f} | "
              f"{accuracy[1]:.3f} | {timing} |")  # fmt: skip


if __name__ == "__main__":
    main()
