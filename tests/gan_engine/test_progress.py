"""RunProgress: the phase a run is in and its seconds left, evaluations included."""

from __future__ import annotations

import pytest

from gan_engine.callbacks import Callback
from gan_engine.events import EVALUATOR_TRAINING_FINISHED, EVALUATOR_TRAINING_STARTED, Event, Phase
from gan_engine.progress import RunProgress
from gan_engine.run import build_trainer
from tests.gan_engine.conftest import dataset_for, tiny_spec


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def progress(clock: Clock, *, total: int = 100, eval_every: int = 50) -> RunProgress:
    run = RunProgress(
        total_steps=total, eval_every=eval_every, eval_samples=640, images_per_step=64, clock=clock
    )
    run.start(0, evaluates=True)
    return run


def event(code: str) -> Event:
    return Event(step=0, level="info", code=code, message="")


def test_no_estimate_before_a_speed_is_measured() -> None:
    assert progress(Clock()).eta_s() is None


def test_before_the_first_evaluation_one_is_assumed_to_take_its_images_at_training_speed() -> None:
    clock = Clock()
    run = progress(clock)
    clock.now = 10.0
    run.on_step(20, {})  # 2 steps a second
    # 80 steps left: 40 s; evaluations at steps 50 and 100, each 640 images = 10 steps = 5 s
    assert run.eta_s() == pytest.approx(40 + 2 * 5)


def test_a_measured_evaluation_replaces_the_assumption_and_is_not_training_time() -> None:
    clock = Clock()
    run = progress(clock)
    clock.now = 25.0
    run.on_phase(Phase.EVALUATING, 50)  # 50 steps in 25 s
    clock.now = 45.0
    run.on_phase(Phase.TRAINING, 50)  # a 20 s evaluation
    assert run.evaluation_s == pytest.approx(20.0)
    assert run.steps_per_s() == pytest.approx(2.0)
    # 50 steps: 25 s; one more evaluation at step 100: 20 s
    assert run.eta_s() == pytest.approx(25 + 20)


def test_during_an_evaluation_the_estimate_counts_down_its_remainder() -> None:
    clock = Clock()
    run = progress(clock)
    clock.now = 25.0
    run.on_phase(Phase.EVALUATING, 50)
    clock.now = 27.0
    # still 5 s assumed for this one (2 s spent), 25 s of training, 5 s for the last evaluation
    assert run.phase is Phase.EVALUATING
    assert run.eta_s() == pytest.approx(3 + 25 + 5)


def test_the_evaluator_classifiers_training_is_counted_out_of_the_evaluation() -> None:
    clock = Clock()
    run = progress(clock)
    clock.now = 25.0
    run.on_phase(Phase.EVALUATING, 50)
    run.on_event(event(EVALUATOR_TRAINING_STARTED))
    clock.now = 85.0
    run.on_event(event(EVALUATOR_TRAINING_FINISHED))  # 60 s, once per dataset
    clock.now = 89.0
    run.on_phase(Phase.TRAINING, 50)
    assert run.evaluation_s == pytest.approx(4.0)
    assert run.steps_per_s() == pytest.approx(2.0)  # neither counts as training time


def test_the_last_step_always_evaluates_and_exporting_has_nothing_left() -> None:
    clock = Clock()
    run = progress(clock, total=120, eval_every=50)
    clock.now = 10.0
    run.on_step(20, {})
    # 100 steps left: 50 s; evaluations at 50, 100 and the last step 120: 3 x 5 s
    assert run.eta_s() == pytest.approx(50 + 15)
    run.on_phase(Phase.EXPORTING, 120)
    assert run.eta_s() == 0.0


def test_a_run_without_evaluation_counts_training_only() -> None:
    clock = Clock()
    run = RunProgress(total_steps=100, eval_every=50, eval_samples=640, images_per_step=64,
                      clock=clock)  # fmt: skip
    run.start(60, evaluates=False)  # a resumed run: speed from step 60 on
    clock.now = 10.0
    run.on_step(80, {})
    assert run.eta_s() == pytest.approx(10.0)


class Phases(Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def on_phase(self, phase: Phase, step: int) -> None:
        self.seen.append((str(phase), step))

    def on_event(self, event: Event) -> None:
        self.seen.append((event.code, event.step))


def test_a_trainer_moves_through_its_phases_and_says_when_it_evaluates() -> None:
    spec = tiny_spec(
        training={"steps": 4}, monitor={"eval_every": 2, "metrics": ["class_accuracy"]}
    )
    seen = Phases()
    trainer = build_trainer(spec, dataset_for(spec), callbacks=[seen])

    trainer.fit()
    trainer.enter_phase(Phase.EXPORTING)

    evaluation = ["evaluation_started", "evaluation_finished"]
    first = [evaluation[0], EVALUATOR_TRAINING_STARTED, EVALUATOR_TRAINING_FINISHED, evaluation[1]]
    codes = [code for code, _ in seen.seen]
    assert codes == ["training", "evaluating", *first, "training", "evaluating", *evaluation,
                     "exporting"]  # fmt: skip
    assert seen.seen[1] == ("evaluating", 2) and seen.seen[-1] == ("exporting", 4)
    assert trainer.progress.phase is Phase.EXPORTING and trainer.progress.evaluation_s is not None
