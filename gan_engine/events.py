"""Events: what a run tells its owner besides numbers (warnings, diagnostics, errors), and the
phase it is in."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Literal

Level = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class Event:
    step: int
    level: Level
    code: str  # machine-readable, e.g. "mode_collapse", "diverged", "checkpoint"
    message: str  # plain language, with advice where there is some

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Phase(StrEnum):
    """What a run is doing. ``evaluating`` covers the evaluator classifier's training (once per
    dataset, then cached) and the quality metrics; ``exporting`` writes the trained generator."""

    TRAINING = "training"
    EVALUATING = "evaluating"
    EXPORTING = "exporting"


# the events that bracket the evaluator classifier's training (RunProgress times them)
EVALUATOR_TRAINING_STARTED = "evaluator_training_started"
EVALUATOR_TRAINING_FINISHED = "evaluator_training_finished"
