"""The real service the SDK and client-command tests talk to: one ``ganforge up`` a module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ganforge import Client
from tests.fixtures.embedded import Up, running


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[Up]:
    with running(tmp_path_factory.mktemp("up"), data_dir) as up:
        yield up


@pytest.fixture(scope="module")
def client(service: Up) -> Iterator[Client]:
    with Client(service.url, service.key()) as client:
        yield client
