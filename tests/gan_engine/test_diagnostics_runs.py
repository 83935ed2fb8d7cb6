"""Diagnostics on real training runs: one built to fail, one healthy (no alarm allowed)."""

from gan_engine.diagnostics import Diagnostics
from gan_engine.events import Event
from gan_engine.trainer import Trainer
from tests.gan_engine.conftest import Recorder, dataset_for, tiny_spec

POINT_MODEL = {"architecture": "mlp", "width": 64, "latent_dim": 2, "mlp_layers": 3}


def warnings_of(spec) -> list[Event]:
    recorder = Recorder()
    trainer = Trainer(spec, dataset_for(spec), callbacks=[recorder])
    trainer.diagnostics = Diagnostics(spec, trainer.num_classes)
    trainer.fit()
    return [event for event in recorder.events if event.level == "warning"]


def test_saturating_minimax_against_a_strong_discriminator_is_flagged() -> None:
    spec = tiny_spec(
        "grid25",
        model=POINT_MODEL,
        loss={"kind": "minimax"},
        optimizer={"generator": {"lr": 5e-5}, "discriminator": {"lr": 2e-3}},
        training={"steps": 600, "batch_size": 64, "ema_decay": 0.0},
        monitor={"log_every": 5, "sample_every": 10**6, "checkpoint_every": 10**6},
    )
    warnings = warnings_of(spec)
    codes = [event.code for event in warnings]
    assert "vanishing_gradients" in codes, codes
    assert len(codes) == len(set(codes)), f"warned more than once per episode: {codes}"
    advice = next(e.message for e in warnings if e.code == "vanishing_gradients")
    assert "non_saturating" in advice and "D(G(z))" in advice


def test_a_healthy_run_raises_no_alarm() -> None:
    spec = tiny_spec(
        "ring8",
        model=POINT_MODEL,
        loss={"kind": "non_saturating"},
        optimizer={"generator": {"lr": 1e-3}, "discriminator": {"lr": 1e-3}},
        training={"steps": 600, "batch_size": 64, "ema_decay": 0.0},
        monitor={"log_every": 5, "sample_every": 10**6, "checkpoint_every": 10**6},
    )
    assert warnings_of(spec) == []
