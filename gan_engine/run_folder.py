"""The engine CLI's callbacks: a run written to a folder.

DIR/metrics.jsonl   one JSON object per logged step (and per evaluation)
DIR/events.jsonl    {"step", "level", "code", "message"}
DIR/samples/        {step:08d}.png
DIR/checkpoints/    {step:08d}.pt, the newest few kept
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gan_engine.callbacks import Callback
from gan_engine.checkpoint import checkpoint_path, save_checkpoint
from gan_engine.events import Event

KEEP_CHECKPOINTS = 3


class RunFolder(Callback):
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.samples = directory / "samples"
        self.checkpoints = directory / "checkpoints"
        for folder in (self.samples, self.checkpoints):
            folder.mkdir(parents=True, exist_ok=True)

    def _append(self, name: str, record: dict[str, Any]) -> None:
        with (self.directory / name).open("a") as file:
            file.write(json.dumps(record) + "\n")

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self._append("metrics.jsonl", {"step": step, **metrics})

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self._append("metrics.jsonl", {"step": step, **metrics})

    def on_event(self, event: Event) -> None:
        self._append("events.jsonl", event.to_dict())

    def on_sample(self, step: int, png: bytes) -> None:
        (self.samples / f"{step:08d}.png").write_bytes(png)

    def on_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        save_checkpoint(state, checkpoint_path(self.checkpoints, step))
        for old in sorted(self.checkpoints.glob("*.pt"))[:-KEEP_CHECKPOINTS]:
            old.unlink()
        self.on_event(Event(step, "info", "checkpoint", f"checkpoint saved at step {step}"))

    def forget_after(self, step: int) -> None:
        """On resume: drop records of steps the checkpoint does not contain (they are replayed)."""
        for name in ("metrics.jsonl", "events.jsonl"):
            path = self.directory / name
            if path.exists():
                kept = [line for line in path.read_text().splitlines()
                        if line and json.loads(line)["step"] <= step]  # fmt: skip
                path.write_text("".join(line + "\n" for line in kept))
        for sample in self.samples.glob("*.png"):
            if int(sample.stem) > step:
                sample.unlink()
