from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from gan_engine.data import Dataset
from gan_engine.data.mixtures import MIXTURES
from gan_engine.evaluation import Evaluator, FolderEvaluatorCache, RunEvaluator
from gan_engine.spec import Spec, parse_spec

CPU = torch.device("cpu")
ALL_METRICS = ["fid", "class_accuracy", "coverage", "precision_recall"]


def _spec(dataset: str, conditioning: str = "none", metrics: list[str] | None = None) -> Spec:
    model: dict[str, Any] = {"conditioning": conditioning}
    model |= {"architecture": "mlp"} if dataset in MIXTURES else {"image_size": 8}
    return parse_spec(
        {
            "dataset": {"builtin": dataset},
            "model": model,
            "monitor": {"eval_samples": 500, "metrics": metrics or ALL_METRICS},
        }
    )


def _real_sampler(dataset: Dataset) -> Any:
    """A perfect generator: distinct real images, of the requested classes when asked."""
    assert dataset.labels is not None
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(1))

    def sample(n: int, labels: Tensor | None) -> Tensor:
        if labels is None:
            return dataset.batch(order[:n])[0]
        index = torch.empty(n, dtype=torch.long)
        for c in labels.unique():
            wanted = labels == c
            of_class = order[dataset.labels[order] == c]
            index[wanted] = of_class[: int(wanted.sum())]
        return dataset.batch(index)[0]

    return sample


def _collapsed_sampler(dataset: Dataset) -> Any:
    image = dataset.batch(torch.tensor([0]))[0]
    generator = torch.Generator().manual_seed(2)
    return lambda n, labels: (
        image.repeat(n, 1, 1, 1) + 0.02 * torch.randn(n, *image.shape[1:], generator=generator)
    )


class CountingCache(FolderEvaluatorCache):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gets = 0

    def get(self, key: str) -> bytes | None:
        self.gets += 1
        return super().get(key)


@pytest.fixture
def cache(digits_evaluator: Evaluator, evaluator_cache_dir: Path) -> CountingCache:
    return CountingCache(evaluator_cache_dir)  # holds digits_evaluator: no test here trains


def test_a_perfect_conditional_generator_scores_like_real_data(
    digits: Dataset, cache: CountingCache
) -> None:
    run = RunEvaluator(spec=_spec("digits", "projection"), dataset=digits, cache=cache, device=CPU)
    metrics = run.evaluate(_real_sampler(digits))
    assert set(metrics) == {
        "fid", "fid_real_baseline", "precision", "recall", "evaluator_accuracy", "class_accuracy",
        "lowest_class_accuracy", "class_coverage", "class_kl", "diversity_ratio",
        "duplicate_fraction",
    }  # fmt: skip
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert metrics["class_accuracy"] >= metrics["evaluator_accuracy"] - 0.05
    assert 0.7 < metrics["lowest_class_accuracy"] <= metrics["class_accuracy"]
    assert metrics["fid"] < 3 * metrics["fid_real_baseline"] + 1.0
    assert metrics["class_coverage"] == 1.0 and metrics["class_kl"] < 0.05
    assert metrics["precision"] > 0.7 and metrics["recall"] > 0.7
    assert metrics["duplicate_fraction"] < 0.05
    assert metrics["diversity_ratio"] == pytest.approx(1.0, abs=0.15)
    assert run.notes == []


def test_a_collapsed_unconditional_generator_is_visible(
    digits: Dataset, cache: CountingCache
) -> None:
    run = RunEvaluator(spec=_spec("digits"), dataset=digits, cache=cache, device=CPU)
    perfect, collapsed = (
        run.evaluate(_real_sampler(digits)),
        run.evaluate(_collapsed_sampler(digits)),
    )
    assert "class_accuracy" not in collapsed
    assert collapsed["class_coverage"] <= 0.2 < perfect["class_coverage"]
    assert collapsed["class_kl"] > 1.5 > 0.1 > perfect["class_kl"]
    assert collapsed["duplicate_fraction"] > 0.9
    assert collapsed["diversity_ratio"] < 0.3
    assert collapsed["recall"] < 0.05
    assert collapsed["fid"] > 10 * perfect["fid"]
    assert any("class_accuracy needs a conditional model" in note for note in run.notes)


def test_the_evaluator_is_loaded_lazily_once_and_the_global_rng_is_untouched(
    digits: Dataset, cache: CountingCache
) -> None:
    run = RunEvaluator(spec=_spec("digits", "concat"), dataset=digits, cache=cache, device=CPU)
    assert cache.gets == 0
    state = torch.get_rng_state()
    first = run.evaluate(_real_sampler(digits))
    second = run.evaluate(_real_sampler(digits))
    assert cache.gets == 1
    assert first == second
    assert torch.equal(torch.get_rng_state(), state)


def test_only_the_requested_metrics_are_computed(digits: Dataset, cache: CountingCache) -> None:
    spec = _spec("digits", "projection", metrics=["precision_recall"])
    metrics = RunEvaluator(spec=spec, dataset=digits, cache=cache, device=CPU).evaluate(
        _real_sampler(digits)
    )
    assert set(metrics) == {"precision", "recall", "evaluator_accuracy"}


def test_conditional_samples_are_asked_for_balanced_labels(
    digits: Dataset, cache: CountingCache
) -> None:
    asked: list[Tensor | None] = []
    sampler = _real_sampler(digits)

    def sample(n: int, labels: Tensor | None) -> Tensor:
        asked.append(labels)
        return sampler(n, labels)

    RunEvaluator(spec=_spec("digits", "acgan"), dataset=digits, cache=cache, device=CPU).evaluate(
        sample
    )
    labels = asked[0]
    assert labels is not None and labels.dtype == torch.int64
    assert torch.bincount(labels).tolist() == [50] * 10


def test_unlabelled_images_get_feature_metrics_without_class_metrics(digits: Dataset) -> None:
    unlabelled = Dataset(digits.data, None, None, "upload")
    spec = _spec("digits", metrics=ALL_METRICS)
    run = RunEvaluator(spec=spec, dataset=unlabelled, cache=None, device=CPU)
    metrics = run.evaluate(_real_sampler(digits))
    assert set(metrics) == {
        "fid", "fid_real_baseline", "precision", "recall", "diversity_ratio", "duplicate_fraction",
    }  # fmt: skip
    assert "no labels" in run.notes[0]


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_point_datasets_get_the_mixture_metrics_whatever_the_list(name: str) -> None:
    mixture = MIXTURES[name]
    points, modes = mixture.sample(1000, torch.Generator().manual_seed(0))
    dataset = Dataset(points, modes, [f"mode{k}" for k in range(len(mixture.modes))], name)
    run = RunEvaluator(spec=_spec(name, metrics=["fid"]), dataset=dataset, cache=None, device=CPU)
    generator = torch.Generator().manual_seed(1)
    metrics = run.evaluate(lambda n, labels: mixture.sample(n, generator)[0])
    assert set(metrics) == {"modes_captured", "high_quality_fraction", "reverse_kl"}
    assert metrics["modes_captured"] == len(mixture.modes)
