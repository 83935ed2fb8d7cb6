from __future__ import annotations

import math
import random
from collections.abc import Iterable

import pytest

from gan_engine.diagnostics import Diagnostics
from gan_engine.events import Event
from gan_engine.spec import parse_spec


def _diagnostics(loss: str = "non_saturating", dataset: str = "digits") -> Diagnostics:
    model = {"architecture": "mlp"} if dataset in ("ring8", "grid25") else {}
    spec = parse_spec({"dataset": {"builtin": dataset}, "model": model, "loss": {"kind": loss}})
    return Diagnostics(spec, num_classes=10)


def _healthy(rng: random.Random) -> dict[str, float]:
    d_real, d_fake = rng.gauss(0.5, 0.3), rng.gauss(-0.4, 0.3)
    return {
        "d_loss": rng.gauss(1.25, 0.15),
        "g_loss": rng.gauss(0.9, 0.25),
        "d_real": d_real,
        "d_fake": d_fake,
        "p_real": 1 / (1 + math.exp(-d_real)),
        "p_fake": 1 / (1 + math.exp(-d_fake)),
        "g_grad_norm": rng.lognormvariate(0.0, 0.3),
        "d_grad_norm": rng.lognormvariate(0.5, 0.3),
        "images_per_s": 5000.0,
    }


def _vanishing(rng: random.Random) -> dict[str, float]:
    """Minimax with a winning D: D(real) ≈ 1, D(fake) ≈ 0, no gradient reaches G."""
    return _healthy(rng) | {
        "d_loss": 0.01, "g_loss": -0.004, "d_real": 6.0, "d_fake": -6.0,
        "p_real": 0.998, "p_fake": 0.003, "g_grad_norm": rng.uniform(1e-6, 1e-5),
    }  # fmt: skip


def _feed(diagnostics: Diagnostics, stream: Iterable[dict[str, float]], start: int) -> list[Event]:
    events = []
    for i, metrics in enumerate(stream):
        events += diagnostics.observe_step((start + i) * 10, metrics)
    return events


@pytest.mark.parametrize("loss", ["minimax", "non_saturating", "hinge", "wgan_gp", "least_squares"])
def test_a_healthy_run_raises_nothing(loss: str) -> None:
    rng, diagnostics = random.Random(0), _diagnostics(loss)
    assert _feed(diagnostics, (_healthy(rng) for _ in range(500)), 0) == []
    evals = [
        {"class_coverage": c, "diversity_ratio": 0.8, "duplicate_fraction": 0.01,
         "precision": p, "recall": r}
        for c, p, r in [(0.5, 0.1, 0.05), (0.8, 0.4, 0.3), (1.0, 0.6, 0.5), (1.0, 0.7, 0.5)]
    ]  # fmt: skip
    assert [e for i, m in enumerate(evals) for e in diagnostics.observe_eval(i, m)] == []


def test_vanishing_gradients_warn_once_per_episode_and_rearm_after_recovery() -> None:
    rng, diagnostics = random.Random(0), _diagnostics("minimax")
    events = _feed(diagnostics, (_healthy(rng) for _ in range(50)), 0)
    events += _feed(diagnostics, (_vanishing(rng) for _ in range(300)), 50)
    assert [(e.step, e.level, e.code) for e in events] == [(690, "warning", "vanishing_gradients")]
    assert "non_saturating" in events[0].message

    events = _feed(diagnostics, (_healthy(rng) for _ in range(10)), 350)
    events += _feed(diagnostics, (_vanishing(rng) for _ in range(30)), 360)
    assert events == []  # a short recovery does not re-arm it

    events = _feed(diagnostics, (_healthy(rng) for _ in range(40)), 390)
    events += _feed(diagnostics, (_vanishing(rng) for _ in range(30)), 430)
    assert [e.code for e in events] == ["vanishing_gradients"]


def test_a_short_blip_is_not_an_episode() -> None:
    rng, diagnostics = random.Random(0), _diagnostics("minimax")
    stream = [_healthy(rng) for _ in range(50)] + [_vanishing(rng) for _ in range(10)]
    assert _feed(diagnostics, stream + [_healthy(rng) for _ in range(50)], 0) == []


def test_a_winning_discriminator_with_non_saturating_loss_is_overpowering() -> None:
    rng, diagnostics = random.Random(0), _diagnostics("non_saturating")
    winning = [_vanishing(rng) | {"g_loss": 6.0, "g_grad_norm": 2.0} for _ in range(100)]
    events = _feed(diagnostics, [_healthy(rng) for _ in range(50)] + winning, 0)
    assert [e.code for e in events] == ["discriminator_overpowering"]
    assert "learning rate" in events[0].message


def test_thresholds_follow_the_loss() -> None:
    rng = random.Random(0)
    # a hinge D with every margin met has zero loss, whatever sigmoid(output) says
    hinge = [_healthy(rng) | {"d_loss": 0.0, "d_real": 1.5, "d_fake": -1.5} for _ in range(50)]
    assert [e.code for e in _feed(_diagnostics("hinge"), hinge, 0)] == [
        "discriminator_overpowering"
    ]
    # a Wasserstein critic's loss near zero means nothing
    critic = [_healthy(rng) | {"d_loss": 0.001} for _ in range(50)]
    assert _feed(_diagnostics("wgan_gp"), critic, 0) == []


def test_sustained_swings_in_the_losses_are_oscillation() -> None:
    rng, diagnostics = random.Random(0), _diagnostics()
    stream = []
    for t in range(200):
        swing = math.sin(2 * math.pi * t / 20)
        g_loss, d_loss = 2.0 + 1.5 * swing, 1.0 - 0.6 * swing
        stream.append(
            _healthy(rng)
            | {"g_loss": g_loss + rng.gauss(0, 0.2), "d_loss": d_loss + rng.gauss(0, 0.1)}
        )
    events = _feed(diagnostics, stream, 0)
    assert [e.code for e in events] == ["oscillation"]


def test_exploding_gradients_and_nan_losses_are_divergence_risks() -> None:
    rng, diagnostics = random.Random(0), _diagnostics()
    exploding = [_healthy(rng) | {"d_grad_norm": 5000.0} for _ in range(5)]
    events = _feed(diagnostics, [_healthy(rng) for _ in range(50)] + exploding, 0)
    assert [(e.step, e.code) for e in events] == [(510, "divergence_risk")]
    assert "d_grad_norm" in events[0].message

    nan = [_healthy(rng) | {"g_loss": float("nan")} for _ in range(2)]
    assert [e.code for e in _feed(_diagnostics(), nan, 0)] == ["divergence_risk"]


def test_falling_class_coverage_is_mode_collapse() -> None:
    diagnostics, events = _diagnostics(), []
    for step, coverage in enumerate([0.6, 0.9, 1.0, 1.0, 0.7, 0.5, 0.4, 0.3]):
        events += diagnostics.observe_eval(step, {"class_coverage": coverage})
    assert [(e.step, e.code) for e in events] == [(5, "mode_collapse")]
    assert "fell from 100% to 50% of 10 classes" in events[0].message
    assert "minibatch" in events[0].message and "pack" in events[0].message
    assert "loss.r1 0.1" in events[0].message
    with_r1 = Diagnostics(
        parse_spec({"dataset": {"builtin": "digits"}, "loss": {"r1": 0.1}}), num_classes=10
    )
    events = []
    for step, coverage in enumerate([1.0, 1.0, 0.5, 0.4]):
        events += with_r1.observe_eval(step, {"class_coverage": coverage})
    assert events and "loss.r1" not in events[0].message  # it already has R1


def test_one_class_turning_into_another_is_class_collapse() -> None:
    """Seed 2 of the Fashion-MNIST recipe: every class drawn well by step 4,000, then its
    sandals turned into sneakers while coverage stayed whole (docs/benchmarks.md)."""
    diagnostics, events = _diagnostics(dataset="fashion-mnist"), []
    for step, (mean, lowest) in enumerate(
        [(0.10, 0.0), (0.80, 0.55), (0.89, 0.68), (0.92, 0.80), (0.85, 0.30), (0.83, 0.08)]
    ):
        metrics = {"class_accuracy": mean, "lowest_class_accuracy": lowest, "class_coverage": 1.0}
        events += diagnostics.observe_eval(step * 1000, metrics)
    assert [(e.step, e.code) for e in events] == [(4000, "class_collapse")]
    assert "every class in at least 80%" in events[0].message
    assert "only 30%" in events[0].message and "linear_decay" in events[0].message


def test_a_weakest_class_that_wavers_is_not_class_collapse() -> None:
    """Shirts, the class real shirts are confused with most (0.66 real), wander by a few points."""
    diagnostics, events = _diagnostics(dataset="fashion-mnist"), []
    for step, lowest in enumerate([0.2, 0.55, 0.7, 0.62, 0.74, 0.48, 0.66]):
        events += diagnostics.observe_eval(step, {"lowest_class_accuracy": lowest})
    assert events == []


def test_sharp_samples_on_few_modes_are_mode_collapse_not_under_training() -> None:
    diagnostics, events = _diagnostics(dataset="ring8"), []
    undertrained = {"modes_captured": 3.0, "high_quality_fraction": 0.1, "reverse_kl": 0.9}
    collapsed = {"modes_captured": 3.0, "high_quality_fraction": 0.9, "reverse_kl": 0.9}
    for step, metrics in enumerate([undertrained] * 3 + [collapsed] * 3):
        events += diagnostics.observe_eval(step, metrics)
    assert [(e.step, e.code) for e in events] == [(4, "mode_collapse")]
    assert "only 3 of 8 modes" in events[0].message


def test_many_near_duplicates_that_look_real_are_mode_collapse() -> None:
    diagnostics = _diagnostics()
    collapsed = {"duplicate_fraction": 0.6, "diversity_ratio": 0.2, "precision": 0.8, "recall": 0.3}
    (event,) = diagnostics.observe_eval(0, collapsed)  # two independent signs: at once
    assert "60% of samples are near-duplicates" in event.message
    assert diagnostics.observe_eval(1, collapsed) == []  # once per episode


def test_a_single_sign_of_collapse_must_recur_at_the_next_evaluation() -> None:
    diagnostics = _diagnostics()
    duplicates_only = {"duplicate_fraction": 0.6, "diversity_ratio": 0.9, "precision": 0.8}
    assert diagnostics.observe_eval(0, duplicates_only) == []
    assert diagnostics.observe_eval(1, {**duplicates_only, "duplicate_fraction": 0.01}) == []
    assert diagnostics.observe_eval(2, duplicates_only) == []
    (event,) = diagnostics.observe_eval(3, duplicates_only)
    assert event.code == "mode_collapse"


def test_an_untrained_generator_is_not_mode_collapse() -> None:
    """At first every sample looks alike and nothing looks real: that needs training, not a fix."""
    diagnostics, events = _diagnostics(), []
    for step, quality in enumerate([0.0, 0.05, 0.1, 0.2, 0.25]):
        metrics = {"precision": quality, "recall": quality, "class_coverage": 0.1 + 2 * quality}
        metrics |= {"duplicate_fraction": 1 - quality, "diversity_ratio": 0.1 + quality}
        events += diagnostics.observe_eval(step, metrics)
    assert events == []


def test_diversity_that_was_there_and_is_lost_is_mode_collapse_without_precision() -> None:
    diagnostics, events = _diagnostics(), []
    for step, diversity in enumerate([0.2, 0.6, 0.9, 0.5, 0.4, 0.3]):
        events += diagnostics.observe_eval(step, {"diversity_ratio": diversity})
    assert [(e.step, e.code) for e in events] == [(5, "mode_collapse")]


def test_collapse_first_seen_at_the_final_evaluation_is_reported() -> None:
    """The evaluation series of a real AC-GAN run on Fashion-MNIST (benchmarks/fashion_mnist.py,
    seed 1) whose footwear classes collapsed between its last two evaluations."""
    spec = parse_spec({"dataset": {"builtin": "fashion-mnist"},
                       "model": {"conditioning": "acgan", "width": 32}})  # fmt: skip
    series = [
        (500, 0.0, 0.7735, 0.9, 0.7056),
        (1000, 0.0405, 0.715, 1.0, 0.6646),
        (1500, 0.149, 0.8445, 1.0, 0.5616),
        (2000, 0.4465, 0.592, 0.9, 0.4952),
    ]
    diagnostics = Diagnostics(spec, num_classes=10)
    events = []
    for step, duplicates, accuracy, coverage, diversity in series:
        events += diagnostics.observe_eval(step, {
            "duplicate_fraction": duplicates, "class_accuracy": accuracy,
            "evaluator_accuracy": 0.902, "class_coverage": coverage, "diversity_ratio": diversity,
        })  # fmt: skip
    assert [(e.step, e.code) for e in events] == [(2000, "mode_collapse")]
    assert "near-duplicates" in events[0].message and "as varied" in events[0].message


def _overfitting_run(spec_fields: dict, *, start: int = 250) -> list[Event]:
    """r_t of a healthy D, then of one that calls almost every training image real."""
    rng = random.Random(0)
    data = {"dataset": {"builtin": "digits"}, "training": {"steps": 5000}, **spec_fields}
    diagnostics = Diagnostics(parse_spec(data), num_classes=10)
    healthy = [_healthy(rng) | {"d_real_sign": rng.uniform(0.1, 0.9)} for _ in range(start)]
    # single batches still dip now and then: the rule reads the median of the last 20
    memorising = [
        _healthy(rng) | {"d_real_sign": -0.3 if i % 7 == 0 else rng.uniform(0.92, 1.0)}
        for i in range(60)
    ]
    return _feed(diagnostics, healthy + memorising, 0)


def test_a_d_that_calls_nearly_every_training_image_real_is_overfitting() -> None:
    events = _overfitting_run({}, start=400)
    assert [e.code for e in events] == ["discriminator_overfitting"]
    assert "augment.kind 'ada'" in events[0].message and "loss.lecam" in events[0].message
    assert events[0].step >= 4000  # the median turned, then held for the rule's window


def test_overfitting_is_not_read_early_with_augmentation_on_or_on_points() -> None:
    assert _overfitting_run({}, start=60) == []  # the first 25 % of a run: every D wins easily
    assert _overfitting_run({"augment": {"kind": "ada"}}, start=400) == []  # ADA responds to it
    points = {"dataset": {"builtin": "ring8"}, "model": {"architecture": "mlp"}}
    assert _overfitting_run(points, start=400) == []  # no augmentation applies to 2-D points
