from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded_single_thread() -> Iterator[None]:
    """Seeded, and one intra-op thread: these nets are tiny, and on a busy machine extra threads
    only wait for each other (a 30 s suite instead of 3 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
