import math
from typing import get_args

import numpy as np
import pytest
import torch

from gan_engine.checkpoint import load_checkpoint
from gan_engine.losses import LOSSES, LossPair
from gan_engine.spec import Conditioning, LossKind, OptimizerSpec, Spec, SpecError
from gan_engine.trainer import Trainer, TrainingDiverged, build_optimizer
from tests.gan_engine.conftest import Recorder, dataset_for, tiny_spec

PNG_MAGIC = b"\x89PNG"


def loss_section(kind: str) -> dict:
    return {"kind": kind, "weight_clip": 0.01} if kind == "wasserstein" else {"kind": kind}


@pytest.mark.parametrize("conditioning", get_args(Conditioning))
@pytest.mark.parametrize("kind", get_args(LossKind))
def test_every_loss_with_every_conditioning_trains_on_digits(kind: str, conditioning: str) -> None:
    spec = tiny_spec("digits", loss=loss_section(kind), model={"conditioning": conditioning})
    recorder = Recorder()
    result = Trainer(spec, dataset_for(spec), callbacks=[recorder]).fit()
    assert result.step == 4 and not result.stopped_early
    for _, metrics in recorder.steps:
        assert math.isfinite(metrics["d_loss"]) and math.isfinite(metrics["g_loss"])
        assert metrics["d_grad_norm"] > 0 and metrics["g_grad_norm"] > 0
    if conditioning == "acgan":
        assert "d_class_loss" in recorder.steps[-1][1]


@pytest.mark.parametrize("conditioning", get_args(Conditioning))
@pytest.mark.parametrize("kind", get_args(LossKind))
def test_every_loss_with_every_conditioning_trains_on_ring8(kind: str, conditioning: str) -> None:
    spec = tiny_spec("ring8", loss=loss_section(kind), model={"conditioning": conditioning})
    recorder = Recorder()
    Trainer(spec, dataset_for(spec), callbacks=[recorder]).fit()
    assert all(math.isfinite(m["d_loss"] + m["g_loss"]) for _, m in recorder.steps)


@pytest.mark.parametrize(
    "overrides",
    [
        {"model": {"minibatch": "discrimination", "spectral_norm": True}},
        {"model": {"minibatch": "stddev", "pack": 4}},
        {"model": {"architecture": "resnet", "conditioning": "projection"}},
        {"model": {"architecture": "mlp", "conditioning": "concat", "pack": 2}},
        {"loss": {"kind": "non_saturating", "r1": 1.0, "label_smoothing": 0.1,
                  "feature_matching": 1.0, "instance_noise": 0.1}},
        {"optimizer": {"generator": {"kind": "rmsprop", "lr": 5e-5}, "n_critic": 3}},
    ],
)  # fmt: skip
def test_d_options_and_regularizers_train(overrides: dict) -> None:
    spec = tiny_spec("digits", **overrides)
    recorder = Recorder()
    Trainer(spec, dataset_for(spec), callbacks=[recorder]).fit()
    last = recorder.steps[-1][1]
    assert math.isfinite(last["d_loss"])
    if spec.loss.r1:
        assert last["r1"] > 0 and "feature_matching" in last


def test_step_metrics_are_complete() -> None:
    spec = tiny_spec("digits", loss={"kind": "wgan_gp"})
    recorder = Recorder()
    Trainer(spec, dataset_for(spec), callbacks=[recorder]).fit()
    required = {"d_loss", "g_loss", "d_real", "d_fake", "p_real", "p_fake", "g_grad_norm",
                "d_grad_norm", "images_per_s", "gp"}  # fmt: skip
    assert [step for step, _ in recorder.steps] == [1, 2, 3, 4]
    assert required <= set(recorder.steps[0][1])
    assert recorder.steps[0][1]["images_per_s"] > 0


def test_callbacks_fire_on_schedule_and_grid_has_one_row_per_class() -> None:
    spec = tiny_spec("digits", model={"conditioning": "concat"},
                     training={"steps": 5}, monitor={"log_every": 2})  # fmt: skip
    recorder = Recorder()
    Trainer(spec, dataset_for(spec), callbacks=[recorder]).fit()
    assert [s for s, _ in recorder.steps] == [2, 4, 5]  # every log_every and the last step
    assert [s for s, _ in recorder.samples] == [2, 4, 5]
    assert sorted(recorder.checkpoints) == [2, 4, 5]
    from io import BytesIO

    from PIL import Image

    png = recorder.samples[-1][1]
    assert png.startswith(PNG_MAGIC)
    height = Image.open(BytesIO(png)).height
    assert height == 10 * (8 + 2) + 2  # 10 classes, 8-pixel images, 2-pixel padding


def test_should_stop_ends_the_run_early() -> None:
    spec = tiny_spec("ring8", training={"steps": 50})
    result = Trainer(spec, dataset_for(spec), callbacks=[Recorder(stop_at=3)]).fit()
    assert result.step == 3 and result.stopped_early


def test_max_runtime_stops_with_an_event() -> None:
    spec = tiny_spec("ring8", training={"steps": 10_000, "max_runtime_s": 1e-9})
    recorder = Recorder()
    result = Trainer(spec, dataset_for(spec), callbacks=[recorder]).fit()
    assert result.stopped_early and result.step == 1
    assert [e.code for e in recorder.events] == ["max_runtime"]


def test_nan_loss_raises_diverged_with_the_step(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tiny_spec("ring8", training={"steps": 10})
    trainer = Trainer(spec, dataset_for(spec), callbacks=[recorder := Recorder()])
    calls = iter(range(1000))

    def nan_from_third_step(fake: torch.Tensor) -> torch.Tensor:
        return fake.mean() * (math.nan if next(calls) >= 2 else 1.0)

    trainer.loss = LossPair(LOSSES["non_saturating"].discriminator, nan_from_third_step)
    with pytest.raises(TrainingDiverged, match="diverged at step 3"):
        trainer.fit()
    assert recorder.events[-1].code == "diverged" and recorder.events[-1].level == "error"


def test_conditioning_needs_labels() -> None:
    from gan_engine.data import Dataset

    spec = tiny_spec("ring8", model={"conditioning": "concat"})
    unlabelled = Dataset(torch.randn(64, 2), None, None, "blobs")
    with pytest.raises(SpecError, match="needs a labelled dataset"):
        Trainer(spec, unlabelled)


def test_training_is_deterministic_on_cpu() -> None:
    spec = tiny_spec("digits", model={"conditioning": "projection"})
    a = Trainer(spec, dataset_for(spec))
    a.fit()
    b = Trainer(spec, dataset_for(spec))
    b.fit()
    for (name, pa), pb in zip(a.G.state_dict().items(), b.G.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize(
    "overrides",
    [
        {"model": {"conditioning": "concat"}, "loss": {"kind": "non_saturating",
                                                       "instance_noise": 0.1}},
        {"preset": "wgan-gp", "model": {"conditioning": "projection"}},
        {"model": {"architecture": "mlp", "minibatch": "discrimination", "pack": 2},
         "optimizer": {"lr_schedule": "linear_decay"}},
        {"model": {"conditioning": "projection"}, "training": {"mixed_precision": "bf16"}},
        {"preset": "wgan-gp", "training": {"mixed_precision": "bf16"}},
        {"model": {"architecture": "resnet"}, "training": {"mixed_precision": "off"}},
        {"model": {"architecture": "resnet", "conditioning": "acgan", "g_conditioning": "cbn"}},
        {"model": {"conditioning": "projection", "g_conditioning": "cbn"},
         "training": {"mixed_precision": "bf16"}},
    ],
)  # fmt: skip
def test_resume_from_checkpoint_is_bit_identical(overrides: dict) -> None:
    overrides = dict(overrides)
    training = {"steps": 6, **overrides.pop("training", {})}
    spec = tiny_spec("digits", training=training, monitor={"checkpoint_every": 3}, **overrides)
    recorder = Recorder()
    uninterrupted = Trainer(spec, dataset_for(spec), callbacks=[recorder])
    uninterrupted.fit()

    resumed = Trainer(spec, dataset_for(spec))
    resumed.load_state_dict(load_checkpoint(recorder.checkpoints[3]))
    assert resumed.step == 3
    resumed.fit()
    for part in ("G", "D"):
        want, got = getattr(uninterrupted, part).state_dict(), getattr(resumed, part).state_dict()
        for name in want:
            assert torch.equal(want[name], got[name]), f"{part}.{name}"
    ema_want = uninterrupted.sampling_generator.state_dict()
    for name, tensor in resumed.sampling_generator.state_dict().items():
        assert torch.equal(ema_want[name], tensor), f"ema.{name}"


def test_ema_decay_warms_up_then_holds() -> None:
    from gan_engine.trainer import ema_with_warmup

    update = ema_with_warmup(0.999)
    averaged, current = [torch.zeros(1)], [torch.ones(1)]
    update(averaged, current, torch.tensor(1))  # decay (1 + 1) / (10 + 1) = 2/11
    assert averaged[0].item() == pytest.approx(9 / 11)
    averaged = [torch.zeros(1)]
    update(averaged, current, torch.tensor(10**6))  # decay capped at 0.999
    assert averaged[0].item() == pytest.approx(0.001)
    counts = [torch.tensor(3)]
    update(counts, [torch.tensor(5)], torch.tensor(2))  # integer buffers are copied
    assert counts[0].item() == 5


def test_linear_decay_lowers_both_learning_rates_to_zero() -> None:
    schedule = {"lr_schedule": "linear_decay", "generator": {"lr": 1e-3}}
    spec = tiny_spec("ring8", training={"steps": 4}, optimizer=schedule)
    trainer = Trainer(spec, dataset_for(spec), callbacks=[Recorder(stop_at=2)])
    trainer.fit()  # the lr of the step just taken (step index 1) is 1e-3 * (1 - 1/4)
    assert trainer.g_optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.75)
    assert trainer.d_optimizer.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.75)


@pytest.mark.parametrize("kind", ["adam", "rmsprop"])
def test_foreach_optimizers_match_the_per_parameter_loop_bit_for_bit(kind: str) -> None:
    """build_optimizer turns foreach on for CPU; earlier benchmark runs used PyTorch's CPU default
    (a loop per parameter), so their results stay reproducible only if the two agree exactly."""
    spec = OptimizerSpec(kind=kind, lr=1e-3, betas=(0.5, 0.999))
    start = [torch.randn(64, 32, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    per_parameter_loop = {
        "adam": lambda ps: torch.optim.Adam(ps, lr=spec.lr, betas=spec.betas, foreach=False),
        "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=spec.lr, foreach=False),
    }[kind]
    trained = []
    for make in (lambda ps: build_optimizer(spec, ps), per_parameter_loop):
        params = [p.clone().requires_grad_() for p in start]
        optimizer = make(params)
        grads = torch.Generator().manual_seed(9)
        for _ in range(50):
            for p in params:
                p.grad = torch.randn(p.shape, generator=grads)
            optimizer.step()
        trained.append(params)
    assert all(torch.equal(a, b) for a, b in zip(*trained, strict=True))


def test_a_trainer_from_a_plainly_validated_wgan_gp_spec_has_its_penalty_on() -> None:
    """Spec.model_validate alone (no normalising step) gives the resolved form: the gradient
    penalty is on and D has no BatchNorm."""
    data = tiny_spec().to_dict() | {"loss": {"kind": "wgan_gp"}}
    data["model"] = {k: v for k, v in data["model"].items() if k != "d_norm"}
    spec = Spec.model_validate(data)
    trainer = Trainer(spec, dataset_for(spec))
    assert trainer.spec.loss.gradient_penalty == 10.0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in trainer.D.modules())
    stats = trainer.discriminator_step(measure=True)
    assert float(stats["gp"]) > 0


def test_images_follow_the_data_size_and_a_resize_is_an_event(tmp_path) -> None:
    from gan_engine.data import load_dataset
    from gan_engine.data.packs import write_pack
    from gan_engine.run import load_training_data

    images = np.random.default_rng(0).integers(0, 255, (64, 12, 12), dtype=np.uint8)
    write_pack(tmp_path / "p.npz", images)
    data = tiny_spec().to_dict()
    data["dataset"] = {"path": str(tmp_path / "p.npz")}
    del data["model"]["image_size"]
    unset = Spec.model_validate(data)
    assert unset.model.image_size is None
    spec, dataset = load_training_data(unset)
    assert spec.model.image_size == 16 and dataset.fitted_from == (12, 12)
    recorder = Recorder()
    Trainer(spec, dataset, callbacks=[recorder]).fit()
    fitted = [e for e in recorder.events if e.code == "data_fitted"]
    assert len(fitted) == 1 and "12×12" in fitted[0].message and "16×16" in fitted[0].message
    trainer = Trainer(unset, load_dataset(unset.dataset))  # the data as stored: fitted the same
    assert trainer.spec.model.image_size == 16 and trainer.dataset.data.shape[-1] == 16


@pytest.mark.parametrize(
    ("choice", "architecture", "expected"),
    [("off", "dcgan", False), ("bf16", "mlp", True), ("auto", "mlp", False)],
)
def test_mixed_precision_choice(choice: str, architecture: str, expected: bool) -> None:
    from gan_engine.precision import uses_bf16

    assert uses_bf16(choice, torch.device("cpu"), architecture) is expected


def test_auto_precision_is_bf16_on_cpus_with_bf16_units_and_channels_last_for_convs() -> None:
    from gan_engine.precision import fast_bf16

    spec = tiny_spec("digits")
    trainer = Trainer(spec, dataset_for(spec), device=torch.device("cpu"))
    assert trainer.bf16 is fast_bf16("cpu")
    conv = next(m for m in trainer.G.modules() if isinstance(m, torch.nn.ConvTranspose2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) is trainer.bf16
    trainer.fit()  # trains, and the EMA copy stays in the artifact's layout
    ema_conv = next(
        m for m in trainer.sampling_generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)
    )
    assert ema_conv.weight.is_contiguous()


def test_compiled_training_runs_and_exports_plain_weights() -> None:
    """training.compile wraps the forward passes only: the modules (and so checkpoints and the
    exported generator) keep their plain parameter names."""
    spec = tiny_spec("ring8", training={"compile": True, "steps": 3})
    recorder = Recorder()
    trainer = Trainer(spec, dataset_for(spec), callbacks=[recorder])
    assert trainer.g_forward is not trainer.G
    trainer.fit()
    assert all(math.isfinite(m["g_loss"]) for _, m in recorder.steps)
    assert not any("_orig_mod" in name for name in trainer.state_dict()["generator"])


def test_compile_refuses_gradient_penalties() -> None:
    with pytest.raises(SpecError) as raised:
        tiny_spec("digits", training={"compile": True}, loss={"kind": "wgan_gp"})
    assert raised.value.param == "training.compile"
