"""The blur experiment: L1 only, adversarial only and adversarial + L1, on two paired tasks.

Trains ``benchmarks/specs/{edges2fashion,superres-x4-fashion}.yaml`` (the adversarial + L1 recipe)
and its two other rows as overrides (``loss.adversarial: 0``: the L1-only baseline, no D;
``loss.l1: 0``: adversarial only) over several seeds, evaluates each final generator on the
held-out pairs and prints a markdown table of mean ± std: PSNR and SSIM (where L1 alone should
win), FID and evaluator class accuracy (where it should lose) and the sharpness
(``hf_energy_ratio``: high-frequency energy of the outputs over the real targets', 1 = as sharp).
Writes ``benchmarks/results/blur_study.json`` and a picture of the three side by side.

    GANFORGE_DATA_DIR=../shared/datasets python -m benchmarks.blur_study --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

from gan_engine.evaluation import EVALUATION_SEED, FolderEvaluatorCache
from gan_engine.evaluation.evaluator import holdout_split
from gan_engine.images import grid, to_uint8
from gan_engine.run import build_trainer, load_training_data
from gan_engine.spec import deep_merge, parse_spec

SPECS = Path(__file__).parent / "specs"
RESULTS = Path(__file__).parent / "results" / "blur_study.json"
PICTURE = Path(__file__).parents[1] / "docs" / "blur_study.png"
DATASETS = ("edges2fashion", "superres-x4-fashion")
ROWS: dict[str, dict[str, Any]] = {
    "L1 only": {"loss": {"adversarial": 0.0}},
    "adversarial only": {"loss": {"l1": 0.0}},
    "adversarial + L1 (the spec file)": {},
}
COLUMNS = ("psnr", "ssim", "l1", "fid", "class_accuracy", "hf_energy_ratio")
SHOWN = 8  # held-out pairs in the picture, per dataset


def spec_for(dataset: str, row: str, seed: int) -> dict[str, Any]:
    written = yaml.safe_load((SPECS / f"{dataset}.yaml").read_text())
    return deep_merge(deep_merge(written, ROWS[row]), {"training": {"seed": seed}})


def train_once(
    dataset: str, row: str, seed: int, cache: Path
) -> tuple[dict[str, float], np.ndarray]:
    """Final metrics, and the translations of the first SHOWN held-out inputs."""
    spec, data = load_training_data(parse_spec(spec_for(dataset, row, seed)))
    trainer = build_trainer(spec, data, evaluator_cache=FolderEvaluatorCache(cache))
    result = trainer.fit()
    assert data.inputs is not None
    shown = holdout_split(len(data), EVALUATION_SEED)[1][:SHOWN]
    return result.summary, to_uint8(trainer.translate(data.inputs[shown]))


def held_out_pairs(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    _, data = load_training_data(parse_spec(spec_for(dataset, "L1 only", 1)))
    assert data.inputs is not None
    shown = holdout_split(len(data), EVALUATION_SEED)[1][:SHOWN]
    scale = lambda x: to_uint8(x.float() / 127.5 - 1.0)  # noqa: E731
    return scale(data.inputs[shown]), scale(data.data[shown])


def picture(outputs: dict[tuple[str, str], np.ndarray]) -> None:
    """Per dataset, SHOWN rows: input | L1 only | adversarial only | adversarial + L1 | target."""
    blocks = []
    for dataset in DATASETS:
        inputs, targets = held_out_pairs(dataset)
        columns = [inputs, *(outputs[dataset, row] for row in ROWS), targets]
        tiles = np.stack(columns, axis=1).reshape(-1, *inputs.shape[1:])
        blocks.append(grid(tiles, columns=len(columns)))
    canvas = np.concatenate(blocks, axis=0)
    image = Image.fromarray(canvas).resize(
        (canvas.shape[1] * 4, canvas.shape[0] * 4), Image.Resampling.NEAREST
    )
    PICTURE.parent.mkdir(parents=True, exist_ok=True)
    image.save(PICTURE)


def table(runs: dict[str, dict[str, list[dict[str, float]]]]) -> str:
    header = "| dataset | row | " + " | ".join(COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for dataset, rows in runs.items():
        for row, metrics in rows.items():
            cells = []
            for name in COLUMNS:
                values = [m[name] for m in metrics if name in m]
                spread = f" ± {statistics.stdev(values):.3g}" if len(values) > 1 else ""
                cells.append(f"{statistics.mean(values):.3g}{spread}" if values else "–")
            lines.append(f"| {dataset} | {row} | " + " | ".join(cells) + " |")
        first = next(iter(rows.values()))[0]
        if "bicubic_psnr" in first:
            cells = [f"{first['bicubic_' + name]:.3g}" if "bicubic_" + name in first else "–"
                     for name in COLUMNS]  # fmt: skip
            lines.append(f"| {dataset} | bicubic upsampling | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/ganforge/evaluators")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    outputs: dict[tuple[str, str], np.ndarray] = {}
    started = time.monotonic()
    for dataset in DATASETS:
        for row in ROWS:
            for seed in args.seeds:
                metrics, shown = train_once(dataset, row, seed, args.cache)
                runs.setdefault(dataset, {}).setdefault(row, []).append(metrics)
                outputs.setdefault((dataset, row), shown)
                print(f"{dataset} / {row} / seed {seed}: " + ", ".join(
                    f"{k} {metrics[k]:.3g}" for k in COLUMNS if k in metrics
                ), flush=True)  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"seeds": args.seeds, "runs": runs}, indent=2))
    picture(outputs)
    print(table(runs))
    print(f"\n{len(args.seeds)} seeds, {time.monotonic() - started:.0f} s; picture: {PICTURE}")


if __name__ == "__main__":
    main()
