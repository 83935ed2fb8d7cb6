"""A job's memory against ``MAX_JOB_MEMORY_BYTES``: checked before training, watched during it.

Before training, the spec's estimate (``gan_engine.memory``) is checked again on the loaded data: a
job submitted under a larger budget is refused with the same advice the API gives. During training,
``MemoryWatch.check`` (asked after every step, through the runner's ``should_stop``) measures what
the job holds: on CUDA the peak of tensors allocated on the device
(``torch.cuda.max_memory_allocated``, reset when the job starts), elsewhere the process's resident
memory that is not file-backed (``/proc/self/statm``: a memory-mapped pack's pages are the page
cache's, which the kernel reclaims) above what it held when the job started. Past the budget the run
stops cleanly after the step and the job fails with ``memory_exceeded``; the process is never
killed.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable

import torch

from gan_engine.data import Dataset
from gan_engine.memory import estimate_training_memory, format_bytes
from gan_engine.spec import Spec
from worker.outcome import MEMORY_EXCEEDED, JobFailed

BUDGET = "MAX_JOB_MEMORY_BYTES"
ADVICE = "lower training.batch_size or model.width"


def resident_bytes() -> int:
    """This process's resident memory less its file-backed pages (``/proc/self/statm``'s
    resident - shared, on Linux), else its peak (``getrusage``; kilobytes on Linux, bytes on
    macOS)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            fields = statm.read().split()
            return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if os.uname().sysname == "Darwin" else peak * 1024)


def check_estimate(spec: Spec, dataset: Dataset, *, budget_bytes: int) -> None:
    """``JobFailed(memory_exceeded)`` if the spec is estimated to need more than the budget (a
    job stored before the budget was lowered), naming the batch size that would fit."""
    estimate = estimate_training_memory(
        spec,
        sample_shape=dataset.sample_shape,
        num_classes=dataset.num_classes,
        num_samples=len(dataset),
        mapped=dataset.mapped is not None,
    )
    if estimate.total_bytes <= budget_bytes:
        return
    batch = estimate.largest_batch_within(budget_bytes)
    lower = (
        f"lower training.batch_size to {batch} or less, or model.width"
        if batch >= 2
        else "lower model.width"
    )
    raise JobFailed(
        MEMORY_EXCEEDED,
        f"this run needs about {format_bytes(estimate.total_bytes)} to train "
        f"({format_bytes(estimate.activation_bytes)} of activations at batch "
        f"{spec.training.batch_size}), over this service's {format_bytes(budget_bytes)} a job "
        f"({BUDGET}, lowered since the job was submitted): {lower}, and submit it again",
    )


class MemoryWatch:
    """Measures a job's memory against ``budget_bytes``. Create it before the job loads anything
    (the CPU baseline), call ``watch(device)`` once the trainer is built, then ``check(step)``."""

    def __init__(self, budget_bytes: int, *, resident: Callable[[], int] = resident_bytes) -> None:
        self.budget_bytes = budget_bytes
        self.resident = resident
        self.baseline = resident()
        self.device = torch.device("cpu")
        self.exceeded: tuple[int, int] | None = None  # (step, bytes) when the budget was passed

    def watch(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def used(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        return max(0, self.resident() - self.baseline)

    def check(self, step: int) -> bool:
        """True (and remembered) once the job holds more than the budget."""
        if self.exceeded is None:
            used = self.used()
            if used > self.budget_bytes:
                self.exceeded = (step, used)
        return self.exceeded is not None

    def message(self) -> str:
        assert self.exceeded is not None
        step, used = self.exceeded
        what = (
            "its peak CUDA memory"
            if self.device.type == "cuda"
            else "the worker's resident memory, above what it held when the job started,"
        )
        return (
            f"stopped at step {step}: {what} reached {format_bytes(used)}, over this service's "
            f"{format_bytes(self.budget_bytes)} a job ({BUDGET}): {ADVICE} (or "
            "monitor.eval_samples), and submit it again"
        )
