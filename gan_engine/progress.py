"""How long a run has left: the training steps at the speed measured so far, plus the evaluations
still to come at the duration of the last one (evaluation included, as the user waits for it)."""

from __future__ import annotations

import time
from collections.abc import Callable

from gan_engine.callbacks import Callback
from gan_engine.events import (
    EVALUATOR_TRAINING_FINISHED,
    EVALUATOR_TRAINING_STARTED,
    Event,
    Phase,
)


class RunProgress(Callback):
    """The phase a run is in and ``eta_s()``, its seconds left; observes, never steers.

    Speed is steps per second of time spent training (evaluations excluded), from ``start``
    on. Before the first evaluation is timed, one is assumed to take as long as training on
    ``eval_samples`` images; the evaluator classifier's first training (once per dataset) is
    not foreseen, only counted out of the evaluation it delays.
    """

    def __init__(
        self,
        *,
        total_steps: int,
        eval_every: int,
        eval_samples: int,
        images_per_step: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total_steps, self.eval_every = total_steps, eval_every
        self.eval_samples, self.images_per_step = eval_samples, images_per_step
        self.clock = clock
        self.phase = Phase.TRAINING
        self.evaluates = False
        self.evaluation_s: float | None = None  # the last evaluation, without evaluator training
        self._step = 0
        self._trained_steps, self._trained_s = 0, 0.0
        self._mark = (0, clock())  # (step, time) since which training is not yet counted
        self._phase_since = clock()
        self._evaluator_training_since: float | None = None
        self._evaluator_training_s = 0.0

    def start(self, step: int, *, evaluates: bool) -> None:
        """Training (re)starts at ``step``; ``evaluates``: whether the run computes metrics."""
        self.evaluates, self._step = evaluates, step
        self._enter(Phase.TRAINING, step)

    # --- observing ----------------------------------------------------------------------------

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        if self.phase is Phase.TRAINING:
            self._count_training(step)
        self._step = step

    def on_phase(self, phase: Phase, step: int) -> None:
        if self.phase is Phase.TRAINING:
            self._count_training(step)
        elif self.phase is Phase.EVALUATING and phase is not Phase.EVALUATING:
            spent = self.clock() - self._phase_since - self._evaluator_training_s
            self.evaluation_s = max(0.0, spent)
        self._step = step
        self._enter(phase, step)

    def on_event(self, event: Event) -> None:
        if event.code == EVALUATOR_TRAINING_STARTED:
            self._evaluator_training_since = self.clock()
        elif event.code == EVALUATOR_TRAINING_FINISHED and self._evaluator_training_since:
            self._evaluator_training_s += self.clock() - self._evaluator_training_since
            self._evaluator_training_since = None

    # --- the estimate -------------------------------------------------------------------------

    def steps_per_s(self) -> float | None:
        if self._trained_steps <= 0 or self._trained_s <= 0:
            return None
        return self._trained_steps / self._trained_s

    def eta_s(self) -> float | None:
        """Seconds left; None until a training speed is measured, 0 while exporting."""
        if self.phase is Phase.EXPORTING:
            return 0.0
        rate = self.steps_per_s()
        if rate is None:
            return None
        step = self._step
        left = max(0, self.total_steps - step) / rate
        if not self.evaluates:
            return left
        per_evaluation = self.evaluation_s
        if per_evaluation is None:
            per_evaluation = self.eval_samples / (rate * self.images_per_step)
        left += self._evaluations_after(step) * per_evaluation
        if self.phase is Phase.EVALUATING:
            left += max(0.0, per_evaluation - self._evaluating_s())
        return left

    def _evaluations_after(self, step: int) -> int:
        """Evaluations at steps in (step, total_steps]: every eval_every, and at the last step."""
        total, every = self.total_steps, self.eval_every
        if step >= total:
            return 0
        return total // every - step // every + (1 if total % every else 0)

    def _evaluating_s(self) -> float:
        """Time in the current evaluation, the evaluator classifier's training left out."""
        now = self.clock()
        training = self._evaluator_training_s
        if self._evaluator_training_since is not None:
            training += now - self._evaluator_training_since
        return now - self._phase_since - training

    def _count_training(self, step: int) -> None:
        mark_step, mark_time = self._mark
        now = self.clock()
        if step > mark_step:
            self._trained_steps += step - mark_step
            self._trained_s += now - mark_time
        self._mark = (step, now)

    def _enter(self, phase: Phase, step: int) -> None:
        self.phase, self._phase_since = phase, self.clock()
        self._evaluator_training_s, self._evaluator_training_since = 0.0, None
        if phase is Phase.TRAINING:
            self._mark = (step, self._phase_since)
