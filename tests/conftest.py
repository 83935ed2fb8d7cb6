"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real datasets: $GANFORGE_DATA_DIR, else ../shared/datasets beside the repository."""
    from_env = os.environ.get("GANFORGE_DATA_DIR")
    path = Path(from_env) if from_env else REPO_ROOT.parent / "shared" / "datasets"
    if not (path / "fashion-mnist").is_dir():
        pytest.fail(
            f"dataset directory {path} is missing (no fashion-mnist/ inside): set "
            "GANFORGE_DATA_DIR to a folder holding the IDX files (see DESIGN.md §7)",
            pytrace=False,
        )
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tiny networks run faster on one thread than with thread-pool overhead on two cores."""
    import torch

    torch.set_num_threads(1)
