"""PacGAN's 2-D benchmark (Lin et al. 2018, Table 1): modes, high-quality samples, reverse KL.

Trains ``benchmarks/specs/{ring8,grid25}.yaml`` (our recipe: non-saturating loss with an R1
penalty) and variants of them without R1 (plain GAN, minibatch discrimination, packing m = 2..4)
over several seeds, evaluates 2,500 samples of each final generator with the PacGAN protocol
(DESIGN.md §6) and prints a markdown table of mean ± std beside the published numbers (mean of 10
runs).

    python benchmarks/mixture2d.py --seeds 1 2 3 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
import yaml

from gan_engine.run import build_trainer, load_training_data
from gan_engine.spec import deep_merge, parse_spec

SPECS = Path(__file__).parent / "specs"
NO_R1 = {"loss": {"r1": 0.0}}
ROWS: dict[str, dict[str, Any]] = {
    "GAN (pack 1)": {"model": {"pack": 1, "minibatch": "none"}, **NO_R1},
    "minibatch discrimination (25 kernels)": {
        "model": {"pack": 1, "minibatch": "discrimination", "minibatch_kernels": 25},
        **NO_R1,
    },
    "PacGAN2": {"model": {"pack": 2, "minibatch": "none"}, **NO_R1},
    "PacGAN3": {"model": {"pack": 3, "minibatch": "none"}, "training": {"batch_size": 99}, **NO_R1},
    "PacGAN4": {"model": {"pack": 4, "minibatch": "none"}, **NO_R1},
    "R1 0.1 (the spec file)": {},
}
PUBLISHED = {  # Lin et al. 2018, Table 1: modes, high-quality %, reverse KL
    ("ring8", "GAN"): (6.3, 98.2, 0.45),
    ("ring8", "PacGAN4"): (7.8, 95.9, 0.07),
    ("grid25", "GAN"): (17.3, 94.8, 0.70),
    ("grid25", "PacGAN4"): (24.8, 93.6, 0.04),
}


def spec_file(dataset: str) -> dict[str, Any]:
    """The spec file as written, so ``auto`` fields resolve for each row's changes."""
    data: dict[str, Any] = yaml.safe_load((SPECS / f"{dataset}.yaml").read_text())
    return data


def row_label(row: str, override: dict[str, Any]) -> str:
    return f"{row} + {json.dumps(override, separators=(',', ':'))}" if override else row


def train_once(
    dataset: str, row: str, seed: int, steps: int | None, override: dict[str, Any]
) -> dict[str, Any]:
    torch.set_num_threads(1)
    data = deep_merge(deep_merge(spec_file(dataset), ROWS[row]), override)
    data["training"]["seed"] = seed
    if steps:
        data["training"]["steps"] = steps
    data["monitor"].update(eval_every=10**9, checkpoint_every=10**9, sample_every=10**9)
    spec = parse_spec(data)
    started = time.perf_counter()
    result = build_trainer(*load_training_data(spec)).fit()
    summary = result.summary
    return {"dataset": dataset, "row": row_label(row, override), "seed": seed,
            "seconds": time.perf_counter() - started, "modes": summary["modes_captured"],
            "hq": 100 * summary["high_quality_fraction"], "kl": summary["reverse_kl"]}  # fmt: skip


def mean_std(values: list[float], digits: int) -> str:
    if len(values) == 1:  # one seed: no spread to show
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(results: list[dict[str, Any]], datasets: list[str]) -> str:
    modes = {"ring8": 8, "grid25": 25}
    lines = [
        "| dataset | recipe | seeds | modes | high-quality % | reverse KL | all modes every seed "
        "| s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dataset in datasets:
        for (published_dataset, name), (m, hq, kl) in PUBLISHED.items():
            if published_dataset == dataset:
                lines.append(f"| {dataset} | {name}, published | 10 runs | {m} | {hq} | {kl} | | |")
        labels = {r["row"] for r in results if r["dataset"] == dataset}
        order = list(ROWS)
        for row in sorted(labels, key=lambda label: (order.index(label.split(" + ")[0]), label)):
            runs = [r for r in results if r["dataset"] == dataset and r["row"] == row]
            seeds = ", ".join(str(s) for s in sorted(r["seed"] for r in runs))
            every = all(r["modes"] == modes[dataset] for r in runs)
            lines.append(
                f"| {dataset} | {row} | {seeds} | {mean_std([r['modes'] for r in runs], 1)} | "
                f"{mean_std([r['hq'] for r in runs], 1)} | "
                f"{mean_std([r['kl'] for r in runs], 3)} | "
                f"{'yes' if every else 'no'} | {statistics.mean(r['seconds'] for r in runs):.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ring8", "grid25"])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, help="override training.steps of the spec files")
    parser.add_argument(
        "--override",
        type=json.loads,
        default={},
        help='JSON merged into every run\'s spec after its row, e.g. \'{"loss": {"r1": 0.3}}\'',
    )
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes, 1 thread each")
    parser.add_argument("--json", type=Path, help="append each run's result here as it ends")
    parser.add_argument(
        "--include",
        type=Path,
        nargs="*",
        default=[],
        help="earlier runs (--json files or printed JSON lines) to table too",
    )
    parser.add_argument("--table-only", action="store_true", help="train nothing: table --include")
    args = parser.parse_args()
    runs = (
        []
        if args.table_only
        else [(d, r, s) for d in args.datasets for r in args.rows for s in args.seeds]
    )
    results = [json.loads(line) for path in args.include
               for line in path.read_text().splitlines() if line.startswith("{")]  # fmt: skip
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(train_once, d, r, s, args.steps, args.override) for d, r, s in runs]
        for future in futures:
            results.append(future.result())
            print(json.dumps(results[-1]), flush=True)
            if args.json:
                with args.json.open("a") as out:
                    out.write(json.dumps(results[-1]) + "\n")
    print("\n2,500 samples evaluated per run; mean ± std over seeds\n")
    shown = [r for r in results if r["dataset"] in args.datasets]
    print(table(shown, sorted({r["dataset"] for r in shown}, reverse=True)))


if __name__ == "__main__":
    main()
