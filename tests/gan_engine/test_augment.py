"""Augmentation of D's inputs (DiffAugment, ADA), LeCam, and the fixed class-balanced subset."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from gan_engine.augment import AdaptiveAugment, Augment, DiffAugment, translate
from gan_engine.checkpoint import load_checkpoint
from gan_engine.data import DatasetError
from gan_engine.data.builtins import subset_index
from gan_engine.spec import AugmentSpec, SpecError, parse_spec
from gan_engine.trainer import Trainer
from tests.gan_engine.conftest import Recorder, dataset_for, tiny_spec

CPU = torch.device("cpu")
# A D that learns fast and an ADA that moves p by 0.25 a D step: p is strictly between 0 and 1
# within a few steps of a tiny run.
FAST_ADA = {"kind": "ada", "ada_kimg": 0.064, "interval": 1, "target": 0.2}
FAST_D = {"discriminator": {"lr": 2e-3}}


def ada(**fields: Any) -> AdaptiveAugment:
    spec = AugmentSpec(kind="ada", **fields)
    return AdaptiveAugment(spec, batch_size=16, boundary=0.0, device=CPU)


# --- spec -------------------------------------------------------------------------------------


def test_augment_defaults_to_none_and_the_spec_fields_resolve() -> None:
    spec = tiny_spec("digits")
    assert spec.augment.kind == "none" and spec.loss.lecam == 0.0 and spec.dataset.subset is None
    spec = tiny_spec("digits", augment={"kind": "diffaugment", "policies": ["cutout"]})
    assert spec.augment.policies == ["cutout"]


@pytest.mark.parametrize(
    ("data", "param", "hint"),
    [
        ({"dataset": {"builtin": "ring8"}, "model": {"architecture": "mlp"},
          "augment": {"kind": "ada"}}, "augment", "2-D points"),
        ({"task": "translation", "dataset": {"builtin": "edges2fashion"},
          "augment": {"kind": "diffaugment"}}, "augment", "translation"),
        ({"augment": {"kind": "ada"}, "loss": {"kind": "wgan_gp"}}, "augment.kind", "diffaugment"),
        ({"augment": {"target": 0.7}}, "augment.target", "'ada'"),
        ({"augment": {"kind": "ada", "policies": ["color"]}}, "augment.policies", "diffaugment"),
        ({"augment": {"kind": "diffaugment", "policies": ["rotate"]}}, "augment.policies.0",
         "translation"),
        ({"augment": {"kind": "ada", "target": 1.0}}, "augment.target", "less than 1"),
        ({"task": "translation", "dataset": {"builtin": "edges2fashion"},
          "loss": {"lecam": 0.3}}, "loss.lecam", "generation"),
        ({"dataset": {"builtin": "digits", "subset": {"per_class": 0}}},
         "dataset.subset.per_class", "greater than"),
    ],
)  # fmt: skip
def test_augmentations_that_do_not_apply_name_the_field(data: dict, param: str, hint: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"dataset": {"builtin": "digits"}, **data})
    assert caught.value.param == param
    assert hint in str(caught.value)


# --- transforms -------------------------------------------------------------------------------


def test_translation_shifts_by_whole_pixels_padding_with_zeros_or_the_reflection() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    down_left = translate(x, torch.tensor([1]), torch.tensor([-1]), reflect=False)
    assert down_left[0, 0].tolist() == [[0, 0, 0, 0], [1, 2, 3, 0], [5, 6, 7, 0], [9, 10, 11, 0]]
    reflected = translate(x, torch.tensor([1]), torch.tensor([-1]), reflect=True)
    assert reflected[0, 0, 0].tolist() == [5, 6, 7, 6] and reflected[0, 0, 1:, :3].equal(
        down_left[0, 0, 1:, :3]
    )


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", ["diffaugment", "ada"])
def test_augmentations_are_differentiable_and_keep_shape_and_layout(
    kind: str, channels: int
) -> None:
    augment = DiffAugment(["translation", "cutout", "color"]) if kind == "diffaugment" else ada()
    if isinstance(augment, AdaptiveAugment):
        augment.p = torch.tensor(1.0)
    x = torch.randn(8, channels, 8, 8).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    y = augment(x)
    assert y.shape == x.shape and y.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(y, x)
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    assert grad.abs().sum() > 0


def test_diffaugment_colour_on_grey_changes_brightness_and_contrast_only() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    y = DiffAugment(["color"])(x)
    # each image is an affine map of itself: a*x + b, with one a and b per image
    for image, out in zip(x, y, strict=True):
        design = torch.stack([image.flatten(), torch.ones(64)], 1)
        solution = torch.linalg.lstsq(design, out.flatten()[:, None]).solution
        assert torch.allclose(design @ solution, out.flatten()[:, None], atol=1e-5)


def test_ada_with_p_zero_leaves_images_as_they_are_and_p_one_changes_each() -> None:
    augment, x = ada(), torch.rand(16, 3, 8, 8)
    assert torch.allclose(augment(x), x, atol=1e-6)
    augment.p = torch.tensor(1.0)
    changed = (augment(x) - x).flatten(1).abs().amax(1) > 1e-3
    assert changed.all()


def test_ada_rotations_and_flips_are_exact_permutations_of_pixels() -> None:
    augment, x = ada(), torch.rand(32, 1, 8, 8)
    augment.p = torch.tensor(1.0)
    flipped, turned = augment._flip(x), augment._rot90(x)
    for out in (flipped, turned):
        assert torch.equal(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    assert not torch.equal(turned, x)


def test_ada_p_follows_the_sign_of_d_on_reals_by_its_step_and_stays_in_0_1() -> None:
    augment = ada(ada_kimg=0.064, interval=2, target=0.6)  # 16 * 2 / 64 = 0.5 per update
    assert augment.step_size == 0.5
    augment.observe_real(torch.ones(16, 1))
    assert float(augment.p) == 0.0  # an update only every `interval` D steps
    augment.observe_real(torch.ones(16, 1))  # r_t = 1 > 0.6
    assert float(augment.p) == 0.5
    for _ in range(4):
        augment.observe_real(torch.ones(16, 1))
    assert float(augment.p) == 1.0  # clamped
    logits = torch.tensor([[1.0]] * 12 + [[-1.0]] * 4)  # r_t = 0.5 < 0.6
    augment.observe_real(logits)
    augment.observe_real(logits)
    assert float(augment.p) == 0.5 and augment.metrics()["ada_p"] == 0.5


# --- in the trainer ---------------------------------------------------------------------------


class CountingAugment(Augment):
    """The real augmentation, counting the D inputs it sees."""

    def __init__(self, inner: Augment) -> None:
        self.inner, self.calls = inner, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


@pytest.mark.parametrize(("loss", "passes"), [({"r1": 1.0}, 3), ({"kind": "wgan_gp"}, 3)])
def test_d_sees_augmented_inputs_in_every_pass_penalties_included(loss: dict, passes: int) -> None:
    spec = tiny_spec("digits", augment={"kind": "diffaugment"}, loss=loss)
    trainer = Trainer(spec, dataset_for(spec))
    trainer.augment = counting = CountingAugment(trainer.augment)
    trainer.discriminator_step(measure=False)
    assert counting.calls == passes  # real, fake, the penalty's inputs
    trainer.generator_step(measure=False)
    assert counting.calls == passes + 1


def test_ada_logs_p_and_reports_it_in_the_summary_and_the_artifact() -> None:
    from gan_engine.run import export_files

    spec = tiny_spec("digits", augment=FAST_ADA, optimizer=FAST_D)
    recorder = Recorder()
    trainer = Trainer(spec, dataset_for(spec), callbacks=[recorder])
    result = trainer.fit()
    logged = [metrics["ada_p"] for _, metrics in recorder.steps]
    assert logged[-1] == result.summary["ada_p"] == float(trainer.augment.metrics()["ada_p"])
    assert max(logged) > 0
    config = json.loads(export_files(trainer, result)["config.json"])
    assert config["metrics"]["ada_p"] == result.summary["ada_p"]


def test_kind_none_logs_no_p_and_checkpoints_no_augment_state() -> None:
    spec = tiny_spec("digits")
    recorder = Recorder()
    trainer = Trainer(spec, dataset_for(spec), callbacks=[recorder])
    result = trainer.fit()
    assert "ada_p" not in recorder.steps[-1][1] and "ada_p" not in result.summary
    assert all(-1 <= metrics["d_real_sign"] <= 1 for _, metrics in recorder.steps)  # r_t
    assert trainer.state_dict()["augment"] is None and trainer.state_dict()["lecam"] is None


def test_a_critic_without_a_fixed_zero_logs_no_r_t() -> None:
    spec = tiny_spec("digits", preset="wgan-gp")
    recorder = Recorder()
    Trainer(spec, dataset_for(spec), callbacks=[recorder]).fit()
    assert "d_real_sign" not in recorder.steps[-1][1]


def _resume_matches(spec: Any) -> tuple[dict[str, Any], Trainer, Trainer]:
    recorder = Recorder()
    uninterrupted = Trainer(spec, dataset_for(spec), callbacks=[recorder])
    uninterrupted.fit()
    checkpoint = load_checkpoint(recorder.checkpoints[3])
    resumed = Trainer(spec, dataset_for(spec))
    resumed.load_state_dict(checkpoint)
    resumed.fit()
    for part in ("G", "D"):
        want, got = getattr(uninterrupted, part).state_dict(), getattr(resumed, part).state_dict()
        for name in want:
            assert torch.equal(want[name], got[name]), f"{part}.{name}"
    ema_want = uninterrupted.sampling_generator.state_dict()
    for name, tensor in resumed.sampling_generator.state_dict().items():
        assert torch.equal(ema_want[name], tensor), f"ema.{name}"
    return checkpoint, uninterrupted, resumed


@pytest.mark.parametrize("architecture", ["dcgan", "resnet"])
def test_resume_with_ada_is_bit_identical_and_continues_with_the_same_p(architecture: str) -> None:
    spec = tiny_spec(
        "digits",
        model={"architecture": architecture, "conditioning": "projection"},
        augment=FAST_ADA,
        optimizer=FAST_D,
        training={"steps": 6},
        monitor={"checkpoint_every": 3},
    )
    checkpoint, uninterrupted, resumed = _resume_matches(spec)
    assert 0.0 < float(checkpoint["augment"]["p"]) < 1.0  # p has moved and still matters
    assert uninterrupted.augment.state_dict() == resumed.augment.state_dict()


def test_resume_with_lecam_and_diffaugment_is_bit_identical() -> None:
    spec = tiny_spec(
        "digits",
        loss={"lecam": 0.3, "r1": 1.0},
        augment={"kind": "diffaugment"},
        training={"steps": 6},
        monitor={"checkpoint_every": 3},
    )
    checkpoint, uninterrupted, resumed = _resume_matches(spec)
    assert checkpoint["lecam"]["anchors"].abs().min() > 0 and checkpoint["lecam"]["updates"] == 3
    assert torch.equal(uninterrupted.lecam.anchors, resumed.lecam.anchors)  # type: ignore[union-attr]


def test_lecam_is_logged_as_part_of_d_s_loss() -> None:
    spec = tiny_spec("digits", loss={"lecam": 0.3})
    recorder = Recorder()
    Trainer(spec, dataset_for(spec), callbacks=[recorder]).fit()
    metrics = recorder.steps[-1][1]
    assert metrics["lecam"] > 0 and metrics["d_loss"] == pytest.approx(
        metrics["d_adv_loss"] + metrics["lecam"], rel=1e-5
    )


# --- the fixed class-balanced subset ------------------------------------------------------------


def test_subset_is_class_balanced_fixed_by_its_seed() -> None:
    dataset = dataset_for(tiny_spec("digits"))
    index = subset_index(dataset, 5, seed=0)
    assert dataset.labels is not None
    assert torch.bincount(dataset.labels[index]).tolist() == [5] * 10
    assert torch.equal(index, subset_index(dataset, 5, seed=0))
    assert not torch.equal(index, subset_index(dataset, 5, seed=1))
    assert torch.equal(subset_index(dataset, 3, seed=0), subset_index(dataset, 3, seed=0))


def test_subset_larger_than_a_class_names_the_field() -> None:
    dataset = dataset_for(tiny_spec("digits"))
    with pytest.raises(DatasetError) as caught:
        subset_index(dataset, 10_000, seed=0)
    assert caught.value.param == "dataset.subset.per_class" and "class 0" in str(caught.value)


def test_the_trainer_draws_real_batches_only_from_the_subset() -> None:
    spec = tiny_spec("digits", dataset={"builtin": "digits", "subset": {"per_class": 1}})
    trainer = Trainer(spec, dataset_for(spec))
    assert trainer.train_index is not None and len(trainer.train_index) == 10
    kept = {tuple(image.flatten().tolist()) for image in trainer.data[trainer.train_index]}
    for _ in range(3):
        real, _ = trainer._real_batch()
        drawn = ((real + 1) * 127.5).round().to(torch.uint8)
        assert {tuple(image.flatten().tolist()) for image in drawn} <= kept
    assert len(trainer.dataset) == len(dataset_for(spec))  # evaluation sees the whole dataset
