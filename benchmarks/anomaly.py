"""Anomaly detection with a trained GAN: the one-class protocol on Fashion-MNIST (or MNIST).

For each normal class k and seed: train ``benchmarks/specs/anomaly-fashion.yaml`` with
``dataset.classes: [k]`` (the override), export the artifact as the service keeps it (generator +
discriminator), reload it, and score a stratified subset of the test split (``--per-class``
images of every class; class k is normal, the nine others anomalous) with both of
``gan_engine.anomaly``'s scores. Beside them, in the same run and on the same images, two
k-nearest-neighbour baselines (mean distance to the k=5 nearest normal training images):

- ``knn_evaluator``: in the feature space of the evaluator classifier (trained on the whole
  labelled training split, all ten classes: it has seen the anomalous classes' labels, so this
  baseline is privileged, not a one-class method);
- ``knn_pixels``: on raw pixels, using the normal class only (a fair one-class baseline).

Prints AUROC per class and the mean, as a markdown table, and writes the rows as JSON;
``--from-logs LOG...`` prints the table of runs made apart (seeds in several processes).

    GANFORGE_DATA_DIR=../shared/datasets OMP_NUM_THREADS=1 python benchmarks/anomaly.py \\
        --classes 0 1 2 3 4 5 6 7 8 9 --seeds 1 --out runs/anomaly

``--protocol leave-one-out`` trains on the nine other classes instead (class k the anomaly).

MNIST (``--dataset mnist``): only its 10,000-image test split is on this machine, so it is split
in two fixed halves (seed 0): the GANs, the kNN references and the evaluator see the first half,
the scores are measured on the second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from sklearn.metrics import roc_auc_score

from gan_engine.anomaly import SearchSettings, discriminator_scores, reconstruction_scores
from gan_engine.artifacts import GeneratorArtifact, write_artifact
from gan_engine.data import Dataset, load_dataset
from gan_engine.data.builtins import fit_data, of_classes
from gan_engine.evaluation.evaluator import (
    FolderEvaluatorCache,
    holdout_split,
    load_or_train_evaluator,
)
from gan_engine.run import export_files
from gan_engine.spec import DatasetSpec, Spec, load_spec, parse_spec
from gan_engine.trainer import Trainer

SPEC = Path("benchmarks/specs/anomaly-fashion.yaml")
KNN = 5
METHODS = ("discriminator", "reconstruction", "knn_evaluator", "knn_pixels")


def stratified(test: Dataset, per_class: int, seed: int = 0) -> torch.Tensor:
    """``per_class`` test indices of every class, fixed by ``seed``."""
    assert test.labels is not None
    rng = torch.Generator().manual_seed(seed)
    picked = []
    for k in range(test.num_classes):
        index = torch.nonzero(test.labels == k).flatten()
        picked.append(index[torch.randperm(len(index), generator=rng)[:per_class]])
    return torch.cat(picked)


def knn_distance(reference: torch.Tensor, query: torch.Tensor, k: int = KNN) -> torch.Tensor:
    """Mean distance of each query row to its k nearest reference rows."""
    distances = torch.cat([torch.cdist(chunk, reference) for chunk in query.split(1024)])
    return distances.topk(k, dim=1, largest=False).values.mean(dim=1)


def subset(dataset: Dataset, index: torch.Tensor) -> Dataset:
    assert dataset.labels is not None
    return Dataset(dataset.data[index], dataset.labels[index], dataset.class_names, dataset.name,
                   fitted_from=dataset.fitted_from)  # fmt: skip


def splits(name: str, image_size: int) -> tuple[Dataset, Dataset]:
    """(training images, test images) of ``name``; MNIST's test split cut in two halves."""
    if name == "mnist":
        whole = load_dataset(DatasetSpec(builtin=name, split="test"), image_size=image_size)
        first, second = holdout_split(len(whole), seed=0, fraction=0.5)
        return subset(whole, first), subset(whole, second)
    train = load_dataset(DatasetSpec(builtin=name), image_size=image_size)
    return train, load_dataset(DatasetSpec(builtin=name, split="test"), image_size=image_size)


def run_one(
    base: dict[str, Any],
    normal: list[int],
    seed: int,
    full_train: Dataset,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    evaluator_features: Any,
    search: SearchSettings,
    out: Path | None,
) -> dict[str, Any]:
    data = json.loads(json.dumps(base))
    data["dataset"]["classes"] = normal  # the override; of_classes applies it to full_train
    data["training"]["seed"] = seed
    spec: Spec = parse_spec(data)
    spec, dataset = fit_data(spec, of_classes(full_train, normal))
    started = time.perf_counter()
    trainer = Trainer(spec, dataset)  # no evaluator: the scores below are this run's measure
    result = trainer.fit()
    train_s = time.perf_counter() - started
    files = export_files(trainer, result)
    folder = (out or Path("runs/anomaly")) / f"normal{'-'.join(map(str, normal))}-seed{seed}"
    write_artifact(folder, files)
    artifact = GeneratorArtifact.load(folder, precision="auto")
    started = time.perf_counter()
    is_anomaly = (~torch.isin(test_y, torch.tensor(normal))).numpy()
    scores = {
        "discriminator": discriminator_scores(artifact, test_x),
        "reconstruction": reconstruction_scores(artifact, test_x, settings=search),
    }
    score_s = time.perf_counter() - started
    train_x = dataset.batch(torch.arange(len(dataset)))[0]
    scores["knn_pixels"] = knn_distance(train_x.flatten(1), test_x.flatten(1))
    scores["knn_evaluator"] = knn_distance(evaluator_features(train_x), evaluator_features(test_x))
    auroc = {m: float(roc_auc_score(is_anomaly, scores[m].numpy())) for m in METHODS}
    return {"normal": normal, "seed": seed, "train_s": train_s, "score_s": score_s,
            "auroc": auroc}  # fmt: skip


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--dataset", choices=["fashion-mnist", "mnist"])
    parser.add_argument("--protocol", choices=["one-class", "leave-one-out"], default="one-class")
    parser.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--steps", type=int, help="override training.steps")
    parser.add_argument("--per-class", type=int, default=100, help="test images of each class")
    parser.add_argument("--search-steps", type=int, default=30)
    parser.add_argument("--search-starts", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/evaluators"))
    parser.add_argument("--out", type=Path, default=Path("runs/anomaly"))
    parser.add_argument("--from-logs", type=Path, nargs="+", help="only print these logs' table")
    args = parser.parse_args()
    if args.from_logs:
        table_from_logs(args.from_logs, args.dataset or "fashion-mnist")
        return
    base = load_spec(args.spec).to_dict()
    if args.dataset:
        base["dataset"]["builtin"] = args.dataset
    if args.steps:
        base["training"]["steps"] = args.steps
    name = base["dataset"]["builtin"]
    size = base["model"]["image_size"]
    full_train, test = splits(name, size)
    evaluator = load_or_train_evaluator(
        full_train, cache=FolderEvaluatorCache(args.cache_dir), device=torch.device("cpu")
    )
    test_x, test_y = test.batch(stratified(test, args.per_class))
    assert test_y is not None
    search = SearchSettings(steps=args.search_steps, starts=args.search_starts, seed=0)
    rows = []
    for k in args.classes:
        normal = [k] if args.protocol == "one-class" else [c for c in range(10) if c != k]
        for seed in args.seeds:
            row = run_one(base, normal, seed, full_train, test_x, test_y, evaluator.features,
                          search, args.out)  # fmt: skip
            row["class"] = k
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}-{args.protocol}.json").write_text(json.dumps(rows, indent=2))
    print(f"\n{name}, {args.protocol}, seeds {args.seeds}, {base['training']['steps']} steps, "
          f"{len(test_x)} test images ({args.per_class} per class), search {search.steps} steps "
          f"x {search.starts} starts, evaluator accuracy {evaluator.accuracy:.3f}\n")  # fmt: skip
    print_table(rows, test.class_names or [str(k) for k in range(10)])


def print_table(rows: list[dict[str, Any]], names: list[str]) -> None:
    """AUROC per class (mean ± std over seeds) and the mean over classes (± std over seeds)."""
    print("| class | " + " | ".join(METHODS) + " |\n|---|" + "---|" * len(METHODS))
    classes = sorted({r["class"] for r in rows})
    for k in classes:
        of_class = [r for r in rows if r["class"] == k]
        cells = [mean_std([r["auroc"][m] for r in of_class]) for m in METHODS]
        print(f"| {k} {names[k]} | " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in rows})
    per_seed = {
        m: [statistics.mean(r["auroc"][m] for r in rows if r["seed"] == s) for s in seeds]
        for m in METHODS
    }
    print("| **mean** | " + " | ".join(f"**{mean_std(per_seed[m])}**" for m in METHODS) + " |")
    train_s = statistics.mean(r["train_s"] for r in rows)
    score_s = statistics.mean(r["score_s"] for r in rows)
    print(f"\nseeds {seeds}; mean seconds per class: training {train_s:.0f}, scoring {score_s:.0f}")


def table_from_logs(logs: list[Path], dataset: str) -> None:
    """The table of several runs' logs together (their JSON rows), e.g. seeds run apart."""
    rows = [json.loads(line) for log in logs for line in log.read_text().splitlines()
            if line.startswith("{")]  # fmt: skip
    names = load_dataset(DatasetSpec(builtin=dataset, split="test")).class_names or []
    print_table(rows, names)


if __name__ == "__main__":
    main()
