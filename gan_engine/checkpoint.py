"""Checkpoints: tensors and primitives only, read back with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO

import torch

from gan_engine.errors import EngineError

CHECKPOINT_FORMAT = 1


class CheckpointError(EngineError):
    """A checkpoint that cannot be read, or does not fit the run."""


def checkpoint_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write atomically, so a crash mid-write never leaves a truncated newest checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_bytes(checkpoint_bytes(state))
    partial.replace(path)


def load_checkpoint(source: Path | bytes | BinaryIO) -> dict[str, Any]:
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"not a readable gan_engine checkpoint: {error}") from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError("not a gan_engine checkpoint (missing or unknown 'format')")
    return state


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"{step:08d}.pt"


def newest_checkpoint(directory: Path) -> Path | None:
    found = sorted(directory.glob("*.pt")) if directory.is_dir() else []
    return found[-1] if found else None
