from __future__ import annotations

import math

import pytest
import torch

from gan_engine.data.mixtures import MIXTURES
from gan_engine.evaluation.mixture2d import mixture_metrics


def _sample(name: str, n: int = 2500, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return MIXTURES[name].sample(n, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_samples_from_the_mixture_capture_every_mode_evenly(name: str) -> None:
    points, _ = _sample(name)
    metrics = mixture_metrics(points, MIXTURES[name])
    assert metrics["modes_captured"] == len(MIXTURES[name].modes)
    # within 3 std of the centre in 2-D: 1 - exp(-4.5) = 98.9 % of a Gaussian's mass
    assert metrics["high_quality_fraction"] == pytest.approx(0.989, abs=0.01)
    assert metrics["reverse_kl"] < 0.02


def test_samples_from_half_the_modes_score_log_2() -> None:
    points, modes = _sample("ring8", 5000)
    half = points[modes % 2 == 0]
    metrics = mixture_metrics(half, MIXTURES["ring8"])
    assert metrics["modes_captured"] == 4
    assert metrics["reverse_kl"] == pytest.approx(math.log(2), abs=0.01)


def test_points_far_from_every_mode_are_low_quality() -> None:
    points, _ = _sample("grid25")
    metrics = mixture_metrics(points + 100.0, MIXTURES["grid25"])
    assert metrics == {
        "modes_captured": 0.0,
        "high_quality_fraction": 0.0,
        "reverse_kl": pytest.approx(math.log(25)),
    }


def test_a_single_mode_scores_the_largest_kl_and_non_finite_points_are_low_quality() -> None:
    ring = MIXTURES["ring8"]
    points = ring.modes[3].repeat(100, 1)
    points[:50] = float("nan")
    metrics = mixture_metrics(points, ring)
    assert metrics["modes_captured"] == 1
    assert metrics["high_quality_fraction"] == pytest.approx(0.5)
    assert metrics["reverse_kl"] == pytest.approx(math.log(8))


def test_points_between_modes_are_low_quality() -> None:
    ring = MIXTURES["ring8"]
    midpoints = (ring.modes + ring.modes.roll(1, 0)) / 2
    assert mixture_metrics(midpoints, ring)["high_quality_fraction"] == 0.0
