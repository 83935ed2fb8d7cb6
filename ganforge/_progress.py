"""A rich progress bar for ``jobs.wait``, fed by stream messages or polled jobs (stderr)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from ganforge.types import Job, Progress, StreamMessage

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID


class JobProgress:
    """A no-op unless ``enabled``: one bar, the step of the total, the status or phase."""

    def __init__(self, job_id: str, *, enabled: bool) -> None:
        self.job_id, self.enabled = job_id, enabled
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        self._status = "queued"

    def __enter__(self) -> JobProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import (
                Progress as RichProgress,
            )

            self._bar = RichProgress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[speed]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self._describe(), total=None, speed="")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, error, traceback)

    def _describe(self, phase: str | None = None) -> str:
        return f"{self.job_id} {phase or self._status}"

    def _show(self, progress: Progress, phase: str | None = None) -> None:
        if self._bar is None or self._task is None:
            return
        speed = f"{progress.images_per_s:,.0f} img/s" if progress.images_per_s else ""
        self._bar.update(
            self._task, completed=progress.step, total=progress.total or None, speed=speed,
            description=self._describe(phase),
        )  # fmt: skip

    def message(self, message: StreamMessage) -> None:
        if message.event == "progress" and isinstance(message.data, Progress):
            self._show(message.data)
        elif message.event == "status" and isinstance(message.data, dict):
            self._status = str(message.data.get("status", self._status))
            if self._bar is not None and self._task is not None:
                self._bar.update(self._task, description=self._describe())

    def job(self, job: Job) -> None:
        self._status = job.status
        self._show(job.progress, None if job.finished else job.phase)
