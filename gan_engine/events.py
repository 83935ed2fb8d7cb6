"""Events: what a run tells its owner besides numbers (warnings, diagnostics, errors)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
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
