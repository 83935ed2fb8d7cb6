"""A run as TensorBoard event files: scalars grouped by what they measure, the sample grids as
images, warnings and errors as text. ``TensorBoardLog`` writes them live (the engine CLI's
``--tensorboard``); ``write_run`` writes a stored run (the service's export). Both name their
tags with ``tag_of``."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from gan_engine.callbacks import Callback
from gan_engine.events import Event

TAG_GROUPS = (  # the trainer's per-step metrics
    ("losses", ("d_loss", "g_loss", "d_adv_loss", "g_adv_loss", "d_class_loss", "g_class_loss",
                "feature_matching", "gp", "r1")),
    ("discriminator", ("d_real", "d_fake", "p_real", "p_fake")),
    ("gradients", ("g_grad_norm", "d_grad_norm")),
    ("speed", ("images_per_s",)),
)  # fmt: skip
QUALITY = "quality"  # every other metric: the evaluations (fid, class_accuracy, ...)


def tag_of(metric: str) -> str:
    """``losses/d_loss``, ``discriminator/p_real``, ``quality/fid``..."""
    for group, names in TAG_GROUPS:
        if metric in names:
            return f"{group}/{metric}"
    return f"{QUALITY}/{metric}"


def png_array(png: bytes) -> np.ndarray:
    """A PNG as an (H, W, 3) uint8 array, the layout ``add_image`` is told."""
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


class TensorBoardLog(Callback):
    """Writes into ``directory``; ``resumed_at``: a resumed run's checkpoint step (TensorBoard
    then hides what an earlier attempt wrote after it, the steps trained again)."""

    def __init__(self, directory: Path, *, resumed_at: int | None = None) -> None:
        purge_step = None if resumed_at is None else resumed_at + 1
        self.writer = SummaryWriter(str(directory), purge_step=purge_step)

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self._scalars(step, metrics)

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self._scalars(step, metrics)
        self.writer.flush()

    def on_sample(self, step: int, png: bytes) -> None:
        self.writer.add_image("samples", png_array(png), step, dataformats="HWC")

    def on_event(self, event: Event) -> None:
        if event.level != "info":
            self.writer.add_text(
                f"events/{event.level}", f"{event.code}: {event.message}", event.step
            )

    def _scalars(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(tag_of(name), value, step)

    def close(self) -> None:
        self.writer.close()


def write_run(
    directory: Path,
    *,
    metrics: Iterable[tuple[int, str, float | None]],
    samples: Iterable[tuple[int, bytes]],
    events: Iterable[Event] = (),
) -> None:
    """A stored run's (step, name, value) points (None: a NaN/inf, written as NaN), sample grids
    and events as one TensorBoard run in ``directory``."""
    log = TensorBoardLog(directory)
    try:
        for step, name, value in metrics:
            log.writer.add_scalar(tag_of(name), float("nan") if value is None else value, step)
        for step, png in samples:
            log.on_sample(step, png)
        for event in events:
            log.on_event(event)
    finally:
        log.close()
