"""A class-conditional GAN on Fashion-MNIST, judged by an evaluator trained on the real data.

For each seed: train ``benchmarks/specs/fashion-mnist.yaml`` (wall clock measured), then report the
evaluator's accuracy on 1,000 generated samples of every class against its accuracy on the 10,000
real test images, FID in evaluator feature space beside the real-vs-real baseline, and the first
evaluation step at which generated accuracy reached real-test accuracy. Prints a markdown table of
mean ± std over the seeds.

    GANFORGE_DATA_DIR=../shared/datasets python benchmarks/fashion_mnist.py --seeds 1 2 3

``--precision off|bf16|auto`` sets ``training.mixed_precision`` (the spec's default is auto);
``--out DIR`` keeps each seed's trained generator in ``DIR/seed{N}/``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from gan_engine.artifacts import write_artifact
from gan_engine.callbacks import Callback
from gan_engine.data import load_dataset
from gan_engine.evaluation.evaluator import FolderEvaluatorCache, load_or_train_evaluator
from gan_engine.run import build_trainer, export_files, load_training_data
from gan_engine.spec import DatasetSpec, Spec, load_spec, parse_spec

PER_CLASS = 1000


class EvalTimeline(Callback):
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.points: list[tuple[int, float, float]] = []  # step, seconds, class accuracy

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        elapsed = time.perf_counter() - self.started
        self.points.append((step, elapsed, metrics.get("class_accuracy", float("nan"))))
        print(f"  step {step}: {elapsed:.0f} s, " + ", ".join(
            f"{k} {v:.4g}" for k, v in metrics.items()), flush=True)  # fmt: skip


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def run_seed(spec: Spec, cache: FolderEvaluatorCache, test_images: torch.Tensor,
             test_labels: torch.Tensor, out: Path | None = None,
             ) -> dict[str, float | list[float]]:  # fmt: skip
    spec, dataset = load_training_data(spec)
    timeline = EvalTimeline()
    trainer = build_trainer(spec, dataset, callbacks=[timeline], evaluator_cache=cache)
    timeline.started = time.perf_counter()
    result = trainer.fit()
    train_seconds = time.perf_counter() - timeline.started
    if out is not None:
        write_artifact(out, export_files(trainer, result))
    evaluator = load_or_train_evaluator(dataset, cache=cache, device=trainer.device)
    real_accuracy = (evaluator.predict(test_images).cpu() == test_labels).float().mean().item()
    rng = torch.Generator().manual_seed(spec.training.seed + 100)
    per_class = []
    for label in range(dataset.num_classes):
        z = torch.randn(PER_CLASS, spec.model.latent_dim, generator=rng)
        fake = trainer.generate(z, torch.full((PER_CLASS,), label, dtype=torch.int64))
        per_class.append((evaluator.predict(fake).cpu() == label).float().mean().item())
    reached = [(s, t) for s, t, acc in timeline.points if acc >= real_accuracy]
    return {
        "real_test_accuracy": real_accuracy,
        "generated_accuracy": statistics.mean(per_class),
        "per_class": per_class,
        "fid": result.summary["fid"],
        "fid_real_baseline": result.summary["fid_real_baseline"],
        "train_seconds": train_seconds,
        "step_reached": reached[0][0] if reached else float("nan"),
        "seconds_reached": reached[0][1] if reached else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=Path("benchmarks/specs/fashion-mnist.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, help="override training.steps")
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/evaluators"))
    parser.add_argument("--precision", choices=["auto", "off", "bf16"])
    parser.add_argument("--out", type=Path, help="keep each seed's generator in OUT/seed{N}/")
    args = parser.parse_args()
    base = load_spec(args.spec).to_dict()
    if args.steps:
        base["training"]["steps"] = args.steps
    if args.precision:
        base["training"]["mixed_precision"] = args.precision
    cache = FolderEvaluatorCache(args.cache_dir)
    test = load_dataset(DatasetSpec(builtin="fashion-mnist", split="test"), image_size=32)
    test_images, test_labels = test.batch(torch.arange(len(test)))
    names = test.class_names or []
    results = []
    for seed in args.seeds:
        base["training"]["seed"] = seed
        spec = parse_spec(base)
        print(f"seed {seed}: {spec.training.steps} steps", flush=True)
        out = None if args.out is None else args.out / f"seed{seed}"
        results.append(run_seed(spec, cache, test_images, test_labels, out))
        print(f"seed {seed}: {results[-1]}", flush=True)

    def column(key: str) -> list[float]:
        return [float(r[key]) for r in results]  # type: ignore[arg-type]

    seeds = ", ".join(map(str, args.seeds))
    steps, threads = base["training"]["steps"], torch.get_num_threads()
    precision = spec.training.mixed_precision
    print(f"\n{len(results)} seeds ({seeds}), {steps} steps, {threads} CPU threads, "
          f"mixed_precision {precision}\n")  # fmt: skip
    print("| measure | mean ± std |\n|---|---|")
    print(f"| evaluator accuracy, real test images | {mean_std(column('real_test_accuracy'))} |")
    print(f"| evaluator accuracy, generated (all classes) | "
          f"{mean_std(column('generated_accuracy'))} |")  # fmt: skip
    for k, name in enumerate(names):
        values = [r["per_class"][k] for r in results]  # type: ignore[index]
        print(f"| ... generated '{name}' | {mean_std(values)} |")
    print(f"| FID (evaluator space) | {mean_std(column('fid'))} |")
    print(f"| FID real-vs-real baseline | {mean_std(column('fid_real_baseline'))} |")
    print(f"| training wall clock (s) | {mean_std(column('train_seconds'))} |")
    print(f"| first eval step with generated ≥ real accuracy | {column('step_reached')} |")
    reached = [None if math.isnan(s) else round(s) for s in column("seconds_reached")]
    print(f"| ... seconds into training | {reached} |")


if __name__ == "__main__":
    main()
