"""Benchmark specs stay runnable with the engine CLI; every mixture2d row is a valid spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from benchmarks.mixture2d import ROWS, SPECS, spec_file, train_once
from gan_engine.cli import app
from gan_engine.diagnostics import OVERFITTING_RT
from gan_engine.spec import deep_merge, load_spec, parse_spec

SPEC_FILES = sorted(SPECS.glob("*.yaml"))
BETAS = {"generator": {"betas": [0.0, 0.99]}, "discriminator": {"betas": [0.0, 0.99]}}


def test_the_issue_s_three_specs_exist() -> None:
    assert {p.stem for p in SPEC_FILES} >= {"ring8", "grid25", "fashion-mnist"}


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_spec_files_parse(path: Path) -> None:
    assert load_spec(path).training.steps > 0


@pytest.mark.parametrize("row", ROWS)
@pytest.mark.parametrize("dataset", ["ring8", "grid25"])
def test_every_mixture2d_row_is_a_valid_spec(dataset: str, row: str) -> None:
    spec = parse_spec(deep_merge(spec_file(dataset), ROWS[row]))
    uses_r1 = row.startswith("R1")
    assert (spec.loss.r1 > 0) == uses_r1  # only our recipe's row keeps the spec file's R1
    assert spec.model.d_norm == "none"  # every row has the same D, with or without R1


def test_the_best_grid_spec_is_grid25_with_the_variant_s_changes() -> None:
    best = load_spec(SPECS / "grid25-batch1000.yaml")
    variant = parse_spec(
        deep_merge(spec_file("grid25"), {"training": {"batch_size": 1000}, "optimizer": BETAS})
    )
    assert best == variant


@pytest.mark.parametrize("kind", ["none", "diffaugment", "ada"])
@pytest.mark.parametrize(("percent", "per_class"), [(1, 60), (10, 600)])
def test_the_small_data_specs_are_fashion_mnist_on_a_fixed_subset(
    percent: int, per_class: int, kind: str
) -> None:
    """Each differs from fashion-mnist.yaml only in its fixed class-balanced subset and its
    augmentation, so the table compares like with like; and in the two stabilisers the
    full-data recipe gained after the small-data runs were measured (loss.r1, a falling
    learning rate: docs/small-data.md)."""
    spec = load_spec(SPECS / f"fashion-mnist-{percent}pct-{kind}.yaml")
    assert spec.dataset.subset is not None and spec.dataset.subset.per_class == per_class
    assert spec.augment.kind == kind
    base = load_spec(SPECS / "fashion-mnist.yaml").to_dict()
    changed = spec.to_dict()
    assert changed.pop("augment") == spec.augment.model_dump(mode="json")
    base.pop("augment"), base["dataset"].pop("subset")
    assert (base["loss"].pop("r1"), changed["loss"].pop("r1")) == (1.0, 0.0)
    assert (base["model"].pop("d_norm"), changed["model"].pop("d_norm")) == ("layer", "batch")
    lr_schedules = (base["optimizer"].pop("lr_schedule"), changed["optimizer"].pop("lr_schedule"))
    assert lr_schedules == ("linear_decay", "constant")
    assert changed["dataset"].pop("subset") == {"per_class": per_class, "seed": 0}
    assert changed == base


@pytest.mark.parametrize("kind", ["none", "diffaugment", "ada"])
def test_the_r1_small_data_specs_are_today_s_recipe_on_a_fixed_subset(kind: str) -> None:
    """fashion-mnist-10pct-r1decay-*.yaml are fashion-mnist.yaml as it is now, on 10 %, with one
    augmentation; ADA's there steers towards the overfitting warning's 0.9, not 0.6."""
    spec = load_spec(SPECS / f"fashion-mnist-10pct-r1decay-{kind}.yaml")
    assert spec.augment.kind == kind and (kind != "ada" or spec.augment.target == OVERFITTING_RT)
    subset = {"dataset": {"subset": {"per_class": 600, "seed": 0}}}
    augment = {"augment": spec.augment.model_dump(mode="json", exclude_unset=True)}
    full_data = yaml.safe_load((SPECS / "fashion-mnist.yaml").read_text())
    assert spec == parse_spec(deep_merge(deep_merge(full_data, subset), augment))


@pytest.mark.parametrize("name", ["ring8", "grid25", "grid25-batch1000"])
def test_2d_spec_trains_through_the_engine_cli(tmp_path: Path, name: str) -> None:
    """The spec file as written, shortened to a few steps, through `gan_engine train`."""
    data = spec_file(name)
    data["training"]["steps"] = 20
    data["monitor"].update(eval_every=10, checkpoint_every=10, sample_every=10, log_every=5)
    short = tmp_path / f"{name}.yaml"
    short.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    command = ["train", str(short), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evaluations = [row for row in rows if "modes_captured" in row]
    assert [row["step"] for row in evaluations] == [10, 20]
    assert (out / "generator.safetensors").is_file()


def test_mixture2d_override_changes_the_run_and_its_label() -> None:
    result = train_once("grid25", "GAN (pack 1)", 1, 20, {"model": {"width": 16}})
    assert result["row"] == 'GAN (pack 1) + {"model":{"width":16}}'
    assert set(result) == {"dataset", "row", "seed", "seconds", "modes", "hq", "kl"}
    assert 0 <= result["hq"] <= 100 and 0 <= result["modes"] <= 25


def test_the_blur_study_s_rows_are_valid_translation_specs() -> None:
    from benchmarks.blur_study import DATASETS, ROWS, spec_for

    weights = {}
    for dataset in DATASETS:
        for row in ROWS:
            spec = parse_spec(spec_for(dataset, row, seed=2))
            assert spec.task == "translation" and spec.training.seed == 2
            weights[row] = (spec.loss.adversarial, spec.loss.l1)
    assert list(weights.values()) == [(0.0, 100.0), (1.0, 0.0), (1.0, 100.0)]
    assert load_spec(SPECS / "superres-x4-photos.yaml").dataset.builtin == "superres-x4-photos"


def test_the_anomaly_spec_trains_one_class_through_the_engine_cli(tmp_path: Path) -> None:
    """anomaly-fashion.yaml with its data swapped for 8×8 digits (the same one-class override,
    ``dataset.classes``) and a few steps: the run folder keeps the discriminator."""
    data = yaml.safe_load((SPECS / "anomaly-fashion.yaml").read_text())
    assert data["dataset"]["classes"] == [0] and data["model"]["conditioning"] == "none"
    data["dataset"] = {"builtin": "digits", "classes": [3]}
    data["model"].update(image_size=8, width=8)
    data["training"]["steps"] = 4
    data["monitor"].update(eval_every=4, checkpoint_every=4, sample_every=4, eval_samples=100)
    short = tmp_path / "anomaly.yaml"
    short.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    command = ["train", str(short), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert (out / "discriminator.safetensors").is_file()
    assert json.loads((out / "config.json").read_text())["discriminator"] is True
    assert json.loads((out / "spec.json").read_text())["dataset"]["classes"] == [3]
