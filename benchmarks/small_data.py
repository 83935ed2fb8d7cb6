"""Small-data Fashion-MNIST: the full-data recipe on 1 % and 10 % of the images, with and without
augmenting what D sees (``augment: none | diffaugment | ada``).

For each spec and seed: train, then report FID in the evaluator's feature space beside its
real-vs-real baseline and the evaluator's generated class accuracy (both measured against the
whole training split, with the evaluator trained on all of it, whatever subset G and D train on),
and D's overfitting signal over training: at every evaluation, D's mean logit on real images it
trains on minus its mean logit on real test images it never sees (Karras et al. 2020, fig. 1b: the
two drift apart as D memorises its training set), unaugmented, D in eval mode.

    GANFORGE_DATA_DIR=../shared/datasets python -m benchmarks.small_data --seeds 1 2 3 \\
        --specs benchmarks/specs/fashion-mnist-1pct-none.yaml ... --jsonl runs/small.jsonl

Every run is appended to ``--jsonl`` as one JSON line; ``--table FILE...`` prints the markdown
table of the lines in those files (runs made in separate invocations, side by side), with
``fashion-mnist.yaml`` (the full-data recipe) as the reference row when it was run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from gan_engine.callbacks import Callback
from gan_engine.data import load_dataset, to_model_range
from gan_engine.evaluation.evaluator import FolderEvaluatorCache
from gan_engine.run import build_trainer, load_training_data
from gan_engine.spec import DatasetSpec, Spec, load_spec, parse_spec
from gan_engine.trainer import Trainer

SPECS = Path("benchmarks/specs")
FULL_DATA = "fashion-mnist"
AUGMENTS = ("none", "diffaugment", "ada")
SMALL_DATA = [f"fashion-mnist-{p}pct-{k}" for p in (1, 10) for k in AUGMENTS] + [
    f"fashion-mnist-10pct-r1decay-{k}" for k in AUGMENTS
]
PROBE_IMAGES = 1000


class OverfitProbe(Callback):
    """At every evaluation: D(train reals) - D(test reals), mean logits, unaugmented."""

    def __init__(self, test_images: torch.Tensor, test_labels: torch.Tensor) -> None:
        self.trainer: Trainer | None = None
        self.test = (test_images[:PROBE_IMAGES], test_labels[:PROBE_IMAGES])
        self.points: list[tuple[int, float]] = []

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        assert self.trainer is not None
        trainer = self.trainer
        pool, dataset = trainer.batches.pool, trainer.dataset
        index = torch.arange(len(dataset)) if pool is None else pool.cpu()
        index = index[torch.randperm(len(index), generator=torch.Generator().manual_seed(0))]
        index = index[:PROBE_IMAGES]
        assert dataset.labels is not None
        train = (to_model_range(dataset.data[index]), dataset.labels[index])
        gap = d_mean_logit(trainer, *train) - d_mean_logit(trainer, *self.test)
        self.points.append((step, gap))
        print(f"  step {step}: fid {metrics.get('fid', float('nan')):.4g}, class_accuracy "
              f"{metrics.get('class_accuracy', float('nan')):.4g}, D gap {gap:.3f}",
              flush=True)  # fmt: skip


def d_mean_logit(trainer: Trainer, images: torch.Tensor, labels: torch.Tensor | None) -> float:
    was_training = trainer.D.training
    trainer.D.eval()
    try:
        with torch.no_grad():
            labels = labels if trainer.num_classes else None
            labels = None if labels is None else labels.to(trainer.device)
            return trainer.D(images.to(trainer.device), labels).logits.float().mean().item()
    finally:
        trainer.D.train(was_training)


def run(spec: Spec, name: str, cache: FolderEvaluatorCache, test: tuple[torch.Tensor, ...],
        ) -> dict[str, Any]:  # fmt: skip
    spec, dataset = load_training_data(spec)
    probe = OverfitProbe(*test)
    trainer = build_trainer(spec, dataset, callbacks=[probe], evaluator_cache=cache)
    probe.trainer = trainer
    started = time.perf_counter()
    result = trainer.fit()
    subset = spec.dataset.subset
    return {
        "spec": name,
        "seed": spec.training.seed,
        "steps": spec.training.steps,
        "images": len(dataset) if subset is None else subset.per_class * dataset.num_classes,
        "augment": spec.augment.kind,
        "fid": result.summary["fid"],
        "fid_real_baseline": result.summary["fid_real_baseline"],
        "class_accuracy": result.summary["class_accuracy"],
        "ada_p": result.summary.get("ada_p"),
        "d_gap": probe.points,
        "train_seconds": time.perf_counter() - started,
    }


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(rows: list[dict[str, Any]]) -> str:
    by_spec: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_spec[row["spec"]].append(row)
    order = [FULL_DATA, *SMALL_DATA]
    names = sorted(by_spec, key=lambda n: order.index(n) if n in order else len(order))
    lines = [
        "| spec | images | augment | seeds | FID | FID baseline | class accuracy | "
        "D gap over training (seed mean, per eval) | final ADA p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        runs = sorted(by_spec[name], key=lambda r: r["seed"])
        first = runs[0]
        steps = [step for step, _ in first["d_gap"]]
        gaps = [statistics.mean(r["d_gap"][i][1] for r in runs) for i in range(len(steps))]
        trend = " → ".join(f"{g:.2f}" for g in gaps)
        ada = [r["ada_p"] for r in runs if r["ada_p"] is not None]
        lines.append(
            f"| {name} | {first['images']} | {first['augment']} | "
            f"{', '.join(str(r['seed']) for r in runs)} | "
            f"{mean_std([r['fid'] for r in runs])} | "
            f"{mean_std([r['fid_real_baseline'] for r in runs])} | "
            f"{mean_std([r['class_accuracy'] for r in runs])} | {trend} | "
            f"{mean_std(ada) if ada else '–'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=Path, nargs="+",
                        default=[SPECS / f"{n}.yaml" for n in SMALL_DATA])  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, help="override training.steps")
    parser.add_argument("--eval-every", type=int, help="override monitor.eval_every")
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/evaluators"))
    parser.add_argument("--jsonl", type=Path, default=Path("runs/small_data.jsonl"))
    parser.add_argument("--table", type=Path, nargs="+", help="only print these files' table")
    args = parser.parse_args()
    if args.table:
        rows = [json.loads(line) for f in args.table for line in f.read_text().splitlines()]
        print(table(rows))
        return
    cache = FolderEvaluatorCache(args.cache_dir)
    test_split = load_dataset(DatasetSpec(builtin="fashion-mnist", split="test"), image_size=32)
    test = test_split.batch(torch.randperm(len(test_split),
                                           generator=torch.Generator().manual_seed(0)))  # fmt: skip
    args.jsonl.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in args.specs:
        for seed in args.seeds:
            data = load_spec(path).to_dict()
            data["training"]["seed"] = seed
            if args.steps:
                data["training"]["steps"] = args.steps
            if args.eval_every:
                data["monitor"]["eval_every"] = args.eval_every
            print(f"{path.stem} seed {seed}", flush=True)
            row = run(parse_spec(data), path.stem, cache, test)
            print(json.dumps(row), flush=True)
            with args.jsonl.open("a") as out:
                out.write(json.dumps(row) + "\n")
            rows.append(row)
    print("\n" + table(rows))


if __name__ == "__main__":
    main()
