"""A class-conditional GAN on Fashion-MNIST, judged by two classifiers trained on the real data.

For each seed: train ``benchmarks/specs/fashion-mnist.yaml`` (wall clock measured), then ask two
judges of different architectures to classify 1,000 generated samples of every class, each read
against its own accuracy on the 10,000 real test images: the evaluator (a CNN, also the feature
space of FID) and a pixel MLP trained here on the real training split (``second_judge.py``).
Reports FID in evaluator feature space beside the real-vs-real baseline and the first evaluation
step at which generated accuracy reached real-test accuracy. Prints a markdown table of mean ± std
over the seeds, then every seed's per-class figures from both judges.

    GANFORGE_DATA_DIR=../shared/datasets python benchmarks/fashion_mnist.py --seeds 1 2 3

``--precision off|bf16|auto`` sets ``training.mixed_precision`` (the spec's default is auto);
``--out DIR`` keeps each seed's trained generator in ``DIR/seed{N}/``; ``--judge-seed`` seeds the
second judge (trained once per invocation).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from benchmarks.second_judge import PixelJudge, per_class_accuracy, train_pixel_judge
from gan_engine.artifacts import CONFIG_FILE, WEIGHTS_FILE, GeneratorArtifact, write_artifact
from gan_engine.callbacks import Callback
from gan_engine.data import load_dataset, to_model_range
from gan_engine.evaluation.evaluator import FolderEvaluatorCache, load_or_train_evaluator
from gan_engine.evaluation.metrics import fid
from gan_engine.images import channels_first
from gan_engine.run import build_trainer, export_files, load_training_data
from gan_engine.spec import DatasetSpec, Spec, load_spec, parse_spec
from gan_engine.trainer import Trainer

PER_CLASS = 1000
JUDGES = ("evaluator", "pixel MLP")


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


class Predictor(Protocol):
    def predict(self, x: torch.Tensor) -> torch.Tensor: ...


def judged(judge: Predictor, real: tuple[torch.Tensor, torch.Tensor],
           fake: tuple[torch.Tensor, torch.Tensor], num_classes: int,
           ) -> dict[str, float | list[float]]:  # fmt: skip
    """One judge's accuracy on the real test images and on the generated ones, per class too."""
    real_per_class = per_class_accuracy(judge.predict(real[0]), real[1], num_classes)
    predicted = judge.predict(fake[0])
    per_class = per_class_accuracy(predicted, fake[1], num_classes)
    return {
        "real_test_accuracy": (judge.predict(real[0]).cpu() == real[1]).float().mean().item(),
        "real_per_class": real_per_class,
        "generated_accuracy": statistics.mean(per_class),
        "per_class": per_class,
    }


def generated_per_class(trainer: Trainer, num_classes: int, seed: int,
                        ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    rng = torch.Generator().manual_seed(seed + 100)
    images, labels = [], []
    for label in range(num_classes):
        z = torch.randn(PER_CLASS, trainer.spec.model.latent_dim, generator=rng)
        y = torch.full((PER_CLASS,), label, dtype=torch.int64)
        images.append(trainer.generate(z, y).cpu())
        labels.append(y)
    return torch.cat(images), torch.cat(labels)


def served_per_class(artifact: GeneratorArtifact, num_classes: int, seed: int,
                     truncation: float) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """PER_CLASS samples of every class exactly as the service returns them for ``labels: [k],
    n: PER_CLASS, seed, truncation`` (uint8 images; z from a normal truncated to [-t, t]),
    back in [-1, 1] for the judges."""
    images, labels = [], []
    for label in range(num_classes):
        served = artifact.sample(
            labels=[label], n=PER_CLASS, seed=seed + 100 + label, truncation=truncation
        )
        images.append(to_model_range(channels_first(served.data)))
        labels.append(torch.from_numpy(served.labels))
    return torch.cat(images), torch.cat(labels)


def run_seed(spec: Spec, cache: FolderEvaluatorCache, real: tuple[torch.Tensor, torch.Tensor],
             pixel_judge: PixelJudge, out: Path | None = None, truncations: Sequence[float] = (),
             ) -> dict[str, Any]:  # fmt: skip
    spec, dataset = load_training_data(spec)
    timeline = EvalTimeline()
    trainer = build_trainer(spec, dataset, callbacks=[timeline], evaluator_cache=cache)
    timeline.started = time.perf_counter()
    result = trainer.fit()
    train_seconds = time.perf_counter() - timeline.started
    files = export_files(trainer, result)
    if out is not None:
        write_artifact(out, files)
    evaluator = load_or_train_evaluator(dataset, cache=cache, device=trainer.device)
    fake = generated_per_class(trainer, dataset.num_classes, spec.training.seed)
    judges = {
        JUDGES[0]: judged(evaluator, real, fake, dataset.num_classes),
        JUDGES[1]: judged(pixel_judge, real, fake, dataset.num_classes),
    }
    served = GeneratorArtifact.from_bytes(files[WEIGHTS_FILE], files[CONFIG_FILE])
    truncated = {}
    for t in truncations:
        samples = served_per_class(served, dataset.num_classes, spec.training.seed, t)
        truncated[str(t)] = {
            "fid_test": fid(evaluator, real[0], samples[0]),
            JUDGES[0]: judged(evaluator, real, samples, dataset.num_classes),
            JUDGES[1]: judged(pixel_judge, real, samples, dataset.num_classes),
        }
    real_accuracy = judges[JUDGES[0]]["real_test_accuracy"]
    reached = [(s, t) for s, t, acc in timeline.points if acc >= real_accuracy]
    return {
        "judges": judges,
        "fid_test": fid(evaluator, real[0], fake[0]),
        "truncated": truncated,
        "fid": result.summary["fid"],
        "fid_real_baseline": result.summary["fid_real_baseline"],
        "train_seconds": train_seconds,
        "step_reached": reached[0][0] if reached else float("nan"),
        "seconds_reached": reached[0][1] if reached else float("nan"),
    }


def print_per_seed(seeds: list[int], results: list[dict[str, Any]], names: list[str]) -> None:
    """Per seed and judge: real-test and generated accuracy, the gap, the weakest class, and every
    class's generated (real-test) accuracy."""
    short = [name.split("/")[0] for name in names]
    print("\n| seed | judge | real test | generated | gap | lowest class | "
          + " | ".join(short) + " |")  # fmt: skip
    print("|---" * (6 + len(names)) + "|")
    for seed, result in zip(seeds, results, strict=True):
        for judge in JUDGES:
            j = result["judges"][judge]
            low = min(range(len(names)), key=lambda k: j["per_class"][k])
            cells = [f"{g:.3f} ({r:.3f})" for g, r in zip(j["per_class"], j["real_per_class"],
                                                           strict=True)]  # fmt: skip
            gap = j["generated_accuracy"] - j["real_test_accuracy"]
            print(f"| {seed} | {judge} | {j['real_test_accuracy']:.3f} | "
                  f"{j['generated_accuracy']:.3f} | {gap:+.3f} | {short[low]} "
                  f"{j['per_class'][low]:.3f} | " + " | ".join(cells) + " |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=Path("benchmarks/specs/fashion-mnist.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, help="override training.steps")
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/evaluators"))
    parser.add_argument("--precision", choices=["auto", "off", "bf16"])
    parser.add_argument("--out", type=Path, help="keep each seed's generator in OUT/seed{N}/")
    parser.add_argument("--judge-seed", type=int, default=0)
    parser.add_argument("--judge-epochs", type=int, default=8)
    parser.add_argument("--truncations", type=float, nargs="*", default=[],
                        help="also judge samples drawn as served at these truncations")  # fmt: skip
    args = parser.parse_args()
    base = load_spec(args.spec).to_dict()
    if args.steps:
        base["training"]["steps"] = args.steps
    if args.precision:
        base["training"]["mixed_precision"] = args.precision
    cache = FolderEvaluatorCache(args.cache_dir)
    test = load_dataset(DatasetSpec(builtin="fashion-mnist", split="test"), image_size=32)
    real = test.batch(torch.arange(len(test)))
    names = test.class_names or []
    started = time.perf_counter()
    train_split = load_dataset(DatasetSpec(builtin="fashion-mnist"), image_size=32)
    pixel_judge = train_pixel_judge(train_split, seed=args.judge_seed, epochs=args.judge_epochs)
    print(f"pixel MLP judge trained in {time.perf_counter() - started:.0f} s", flush=True)
    results = []
    for seed in args.seeds:
        base["training"]["seed"] = seed
        spec = parse_spec(base)
        print(f"seed {seed}: {spec.training.steps} steps", flush=True)
        out = None if args.out is None else args.out / f"seed{seed}"
        results.append(run_seed(spec, cache, real, pixel_judge, out, args.truncations))
        print(f"seed {seed}: {json.dumps(results[-1])}", flush=True)

    def column(key: str) -> list[float]:
        return [float(r[key]) for r in results]

    def judge_column(judge: str, key: str) -> list[float]:
        return [float(r["judges"][judge][key]) for r in results]

    seeds = ", ".join(map(str, args.seeds))
    steps, threads = base["training"]["steps"], torch.get_num_threads()
    precision = spec.training.mixed_precision
    print(f"\n{len(results)} seeds ({seeds}), {steps} steps, {threads} CPU threads, "
          f"mixed_precision {precision}\n")  # fmt: skip
    print(f"| measure | {' | '.join(JUDGES)} |\n|---|---|---|")
    for key, label in (("real_test_accuracy", "accuracy, real test images"),
                       ("generated_accuracy", "accuracy, generated (all classes)")):  # fmt: skip
        cells = " | ".join(mean_std(judge_column(judge, key)) for judge in JUDGES)
        print(f"| {label} | {cells} |")
    for k, name in enumerate(names):
        cells = " | ".join(
            mean_std([r["judges"][judge]["per_class"][k] for r in results]) for judge in JUDGES
        )
        print(f"| ... generated '{name}' | {cells} |")
    print(f"| FID (evaluator space) | {mean_std(column('fid'))} | |")
    print(f"| FID real-vs-real baseline | {mean_std(column('fid_real_baseline'))} | |")
    print(f"| training wall clock (s) | {mean_std(column('train_seconds'))} | |")
    print(f"| first eval step with generated ≥ real accuracy | {column('step_reached')} | |")
    reached = [None if math.isnan(s) else round(s) for s in column("seconds_reached")]
    print(f"| ... seconds into training | {reached} | |")
    print_per_seed(args.seeds, results, names)
    if args.truncations:
        print_truncations(args.seeds, results, names)


def print_truncations(seeds: list[int], results: list[dict[str, Any]], names: list[str]) -> None:
    """Per seed and z (untruncated, then each truncation): FID of the 10,000 samples against the
    10,000 real test images, and each judge's generated accuracy with its lowest class."""
    short = [name.split("/")[0] for name in names]
    print("\n| seed | z | FID vs test | " + " | ".join(
        f"{judge}: generated | lowest class" for judge in JUDGES) + " |")  # fmt: skip
    print("|---" * (3 + 2 * len(JUDGES)) + "|")
    for seed, result in zip(seeds, results, strict=True):
        rows = [("normal", result["fid_test"], result["judges"])]
        rows += [(f"truncated to ±{t}", r["fid_test"], r) for t, r in result["truncated"].items()]
        for z, fid_test, judges in rows:
            cells = []
            for judge in JUDGES:
                per_class = judges[judge]["per_class"]
                low = min(range(len(names)), key=lambda k: per_class[k])
                cells.append(f"{judges[judge]['generated_accuracy']:.3f} | "
                             f"{short[low]} {per_class[low]:.3f}")  # fmt: skip
            print(f"| {seed} | {z} | {fid_test:.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
