"""Callbacks: the only way the outside world sees a run.

The engine CLI implements them against a folder (``gan_engine.run_folder``); the service's worker
implements them against the database and object storage.
"""

from __future__ import annotations

from typing import Any

from gan_engine.events import Event, Phase


class Callback:
    """No-op base: override what you need."""

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        """Every ``monitor.log_every`` steps and at the last step."""

    def on_phase(self, phase: Phase, step: int) -> None:
        """The run began training, evaluating or exporting (``step``: the steps done so far)."""

    def on_event(self, event: Event) -> None:
        """Warnings and diagnostics, as they happen."""

    def on_sample(self, step: int, png: bytes) -> None:
        """A sample grid (one row per class when conditional) every ``monitor.sample_every``."""

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        """Quality metrics every ``monitor.eval_every`` steps and at the end."""

    def on_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        """A full training state (see gan_engine.checkpoint) every ``monitor.checkpoint_every``."""

    def should_stop(self, step: int) -> bool:
        """Asked after every step; True ends the run cleanly (a cancel, a time limit)."""
        return False
