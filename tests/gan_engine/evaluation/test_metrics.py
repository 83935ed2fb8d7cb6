from __future__ import annotations

import math

import pytest
import torch

from gan_engine.data import Dataset
from gan_engine.evaluation import Evaluator
from gan_engine.evaluation.evaluator import holdout_split
from gan_engine.evaluation.metrics import (
    class_accuracy,
    class_coverage,
    class_histogram,
    diversity_ratio,
    duplicate_fraction,
    fid,
    fid_metric,
    kl_divergence,
    lowest_class_accuracy,
    precision_recall,
)


def _halves(digits: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))
    return digits.batch(order[:800])[0], digits.batch(order[800:1600])[0]


def test_fid_is_small_between_real_sets_and_large_against_noise(
    digits: Dataset, digits_evaluator: Evaluator
) -> None:
    first, second = _halves(digits)
    noise = torch.rand(800, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    real_vs_real = fid(digits_evaluator, first, second)
    real_vs_noise = fid(digits_evaluator, first, noise)
    assert 0 <= real_vs_real < 0.05 * real_vs_noise


def test_the_fid_metric_keeps_its_real_statistics_across_resets(
    digits: Dataset, digits_evaluator: Evaluator
) -> None:
    first, second = _halves(digits)
    metric = fid_metric(digits_evaluator)
    metric.update(first, real=True)
    metric.update(second, real=False)
    before = float(metric.compute())
    metric.reset()
    metric.update(second, real=False)
    assert float(metric.compute()) == pytest.approx(before)


def test_class_accuracy_of_real_images_with_their_labels_is_the_evaluator_accuracy(
    digits: Dataset, digits_evaluator: Evaluator
) -> None:
    _, held_out = holdout_split(len(digits), digits_evaluator.config.seed)
    images, labels = digits.batch(held_out)
    assert labels is not None
    accuracy = class_accuracy(digits_evaluator.predict(images), labels)
    assert accuracy == pytest.approx(digits_evaluator.accuracy)


def test_the_lowest_class_accuracy_is_the_class_recognised_least() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    predicted = torch.tensor([0, 0, 1, 0, 2, 2, 2, 1])  # class 1: 1 of 2, class 2: 3 of 4
    assert lowest_class_accuracy(predicted, labels) == 0.5
    assert class_accuracy(predicted, labels) == 0.75
    asked, judged = torch.tensor([0, 0, 5, 5, 7, 7]), torch.tensor([0, 0, 7, 7, 7, 7])
    assert lowest_class_accuracy(judged, asked) == 0.0  # sandals (5) drawn as sneakers (7)
    assert lowest_class_accuracy(torch.tensor([3, 3]), torch.tensor([3, 3])) == 1.0  # asked only


def test_a_single_class_collapse_covers_one_class_with_kl_log_10(
    digits: Dataset, digits_evaluator: Evaluator
) -> None:
    assert digits.labels is not None
    sevens = digits.batch(torch.nonzero(digits.labels == 7).flatten())[0]
    reference = class_histogram(digits_evaluator.predict(_halves(digits)[0]), 10)
    histogram = class_histogram(digits_evaluator.predict(sevens), 10)
    assert class_coverage(histogram, reference) == pytest.approx(0.1)
    assert kl_divergence(histogram, reference) == pytest.approx(math.log(10), abs=0.15)
    assert class_coverage(reference, reference) == 1.0
    assert kl_divergence(reference, reference) == pytest.approx(0.0, abs=1e-12)


def test_kl_skips_empty_classes_and_stays_finite_for_classes_missing_from_the_reference() -> None:
    half = torch.tensor([0.5, 0.5, 0.0, 0.0])
    assert kl_divergence(half, torch.full((4,), 0.25)) == pytest.approx(math.log(2))
    assert math.isfinite(kl_divergence(torch.full((4,), 0.25), half))


def test_precision_and_recall_of_identical_and_disjoint_sets() -> None:
    features = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    assert precision_recall(features, features) == (1.0, 1.0)
    assert precision_recall(features, features + 100.0) == (0.0, 0.0)


def test_precision_stays_high_and_recall_drops_when_samples_cover_one_cluster() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 4, generator=generator) * 10
    real = centres.repeat(50, 1) + torch.randn(500, 4, generator=generator)
    collapsed = centres[0] + torch.randn(500, 4, generator=generator)
    precision, recall = precision_recall(real, collapsed)
    assert precision > 0.8 and recall < 0.15


def test_duplicates_and_diversity_of_real_and_collapsed_samples() -> None:
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(600, 16, generator=generator)
    other_real = torch.randn(600, 16, generator=generator)
    five_points = real[:5].repeat(120, 1) + 1e-3 * torch.randn(600, 16, generator=generator)
    one_point = real[0] + 0.1 * torch.randn(600, 16, generator=generator)
    assert duplicate_fraction(real, other_real) < 0.05
    assert duplicate_fraction(real, five_points) == 1.0
    assert diversity_ratio(real, other_real) == pytest.approx(1.0, abs=0.05)
    assert diversity_ratio(real, one_point) < 0.1


def test_diversity_is_measured_within_classes() -> None:
    generator = torch.Generator().manual_seed(0)
    classes = torch.arange(400) % 4
    real = torch.randn(400, 8, generator=generator) + classes[:, None] * 10.0
    # the same per-class spread, but each class's samples are one point repeated
    one_per_class = real[:4][classes]
    assert diversity_ratio(real, real, classes, classes) == pytest.approx(1.0)
    assert diversity_ratio(real, one_per_class, classes, classes) == 0.0
