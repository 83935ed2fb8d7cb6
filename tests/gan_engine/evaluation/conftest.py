"""Small real data for the evaluation tests: scikit-learn's 8×8 digits, and one evaluator trained
once per session into a folder cache that later tests load from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from gan_engine.data import Dataset
from gan_engine.evaluation import Evaluator, FolderEvaluatorCache, load_or_train_evaluator

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny nets on a busy machine: extra intra-op threads only wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits() -> Dataset:
    """1,797 images, uint8 (N, 1, 8, 8) scaled from 0..16 to 0..255, 10 classes."""
    raw = load_digits()
    images = np.round(raw.images * 255 / 16).astype(np.uint8)[:, None]
    labels = torch.from_numpy(raw.target.astype(np.int64))
    return Dataset(torch.from_numpy(images), labels, [str(d) for d in range(10)], "digits")


@pytest.fixture(scope="session")
def evaluator_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evaluators")


@pytest.fixture(scope="session")
def digits_evaluator(digits: Dataset, evaluator_cache_dir: Path) -> Evaluator:
    """Trained with the defaults RunEvaluator uses, so RunEvaluator tests load it from the cache."""
    torch.set_num_threads(1)
    return load_or_train_evaluator(
        digits, cache=FolderEvaluatorCache(evaluator_cache_dir), device=CPU
    )
