"""The small-data benchmark's specs exist, and its overfitting probe reads D without changing it."""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.small_data import SMALL_DATA, SPECS, OverfitProbe, table
from gan_engine.evaluation.evaluator import FolderEvaluatorCache
from gan_engine.run import build_trainer
from gan_engine.spec import load_spec
from tests.gan_engine.conftest import dataset_for, tiny_spec


def test_every_small_data_spec_the_script_runs_exists() -> None:
    for name in SMALL_DATA:
        assert load_spec(SPECS / f"{name}.yaml").dataset.subset is not None


def test_overfit_probe_measures_d_on_its_training_subset_and_leaves_d_training(
    tmp_path: Path,
) -> None:
    spec = tiny_spec(
        "digits",
        dataset={"subset": {"per_class": 5, "seed": 0}},
        model={"conditioning": "projection"},
        training={"steps": 4},
        monitor={"eval_every": 2, "metrics": ["fid"], "eval_samples": 100},
    )
    dataset = dataset_for(spec)
    held_out, labels = dataset.batch(torch.arange(40))
    probe = OverfitProbe(held_out, labels)
    trainer = build_trainer(
        spec, dataset, callbacks=[probe], evaluator_cache=FolderEvaluatorCache(tmp_path)
    )
    probe.trainer = trainer
    before = {k: v.clone() for k, v in trainer.D.state_dict().items()}
    probe.on_eval(0, {})
    assert all(torch.equal(before[k], v) for k, v in trainer.D.state_dict().items())
    trainer.fit()
    assert [step for step, _ in probe.points] == [0, 2, 4]
    assert all(torch.isfinite(torch.tensor(gap)) for _, gap in probe.points)
    assert trainer.D.training
    row = {"spec": "fashion-mnist-1pct-none", "seed": 1, "images": 50, "augment": "none",
           "fid": 1.0, "fid_real_baseline": 0.1, "class_accuracy": 0.5, "ada_p": None,
           "d_gap": probe.points}  # fmt: skip
    assert "fashion-mnist-1pct-none" in table([row, {**row, "seed": 2}])
