"""The engine's errors: a message for the user and, as data, the field(s) at fault.

Every error of the engine (a spec, a dataset, an artifact, a checkpoint) is an ``EngineError``
holding ``problems``: ``(loc, message)`` pairs, ``loc`` being the dotted field path
(``model.width``, ``training.batch_size``, ``labels``) or None when no one field is at fault.
Callers read ``error.param`` (the first problem's field), never the message text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_PROBLEMS = 5  # problems kept; a flood of them is summarised, not listed
MAX_PROBLEM_CHARS = 500


@dataclass(frozen=True)
class Problem:
    loc: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.loc}: {self.message}" if self.loc else self.message


class EngineError(ValueError):
    """A problem with what the user gave; ``str(error)`` is meant for them."""

    def __init__(
        self,
        message: str | None = None,
        *,
        param: str | None = None,
        problems: Sequence[Problem] = (),
        total: int | None = None,
    ) -> None:
        listed = list(problems) or [Problem(param, message or "invalid")]
        self.problems = [
            Problem(p.loc, _clip(p.message, MAX_PROBLEM_CHARS)) for p in listed[:MAX_PROBLEMS]
        ]
        self.total = max(total or len(listed), len(self.problems))
        self.message = message if message is not None and not problems else self._joined()
        super().__init__(self.message)

    @property
    def param(self) -> str | None:
        return self.problems[0].loc

    def _joined(self) -> str:
        lines = [str(p) for p in self.problems]
        if self.total > len(self.problems):
            lines.append(f"... and {self.total - len(self.problems)} more problem(s)")
        return "\n".join(lines)


class FieldConflict(ValueError):
    """Raised inside the spec's validators for a check across fields: ``loc`` says which field
    the message is about (pydantic keeps the exception, so the field survives as data)."""

    def __init__(self, loc: str, message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
