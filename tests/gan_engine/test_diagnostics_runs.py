"""Diagnostics on real training runs: one built to fail, one healthy (no alarm allowed)."""

from gan_engine.diagnostics import Diagnostics
from gan_engine.events import Event
from gan_engine.spec import Spec
from gan_engine.trainer import Trainer
from tests.gan_engine.conftest import Recorder, dataset_for, tiny_spec


def point_run(dataset: str, loss: str, *, g_lr: float, d_lr: float) -> Spec:
    """600 logged steps of a small MLP GAN on 2-D points, diagnostics on, nothing else."""
    return tiny_spec(
        dataset,
        model={"architecture": "mlp", "width": 64, "latent_dim": 2, "mlp_layers": 3},
        loss={"kind": loss},
        optimizer={"generator": {"lr": g_lr}, "discriminator": {"lr": d_lr}},
        training={"steps": 600, "batch_size": 64, "ema_decay": 0.0},
        monitor={"log_every": 5, "sample_every": 10**6, "checkpoint_every": 10**6},
    )


def warnings_of(spec: Spec) -> list[Event]:
    recorder = Recorder()
    trainer = Trainer(spec, dataset_for(spec), callbacks=[recorder])
    trainer.diagnostics = Diagnostics(spec, trainer.num_classes)
    trainer.fit()
    return [event for event in recorder.events if event.level == "warning"]


def test_saturating_minimax_against_a_strong_discriminator_is_flagged() -> None:
    warnings = warnings_of(point_run("grid25", "minimax", g_lr=5e-5, d_lr=2e-3))
    codes = [event.code for event in warnings]
    assert "vanishing_gradients" in codes, codes
    assert len(codes) == len(set(codes)), f"warned more than once per episode: {codes}"
    advice = next(e.message for e in warnings if e.code == "vanishing_gradients")
    assert "non_saturating" in advice and "D(G(z))" in advice


def test_a_healthy_run_raises_no_alarm() -> None:
    assert warnings_of(point_run("ring8", "non_saturating", g_lr=1e-3, d_lr=1e-3)) == []
