"""A translation model end to end against the real service (``ganforge up``: SQLite, a storage
folder, a local worker): a paired upload, a job the worker trains, translate from the SDK (sync
and async) and the client CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gan_engine.data.builtins import load_digits
from gan_engine.data.packs import write_pack
from gan_engine.data.paired import edge_map
from ganforge import APIError, AsyncClient, Client, Job
from ganforge.cli import app
from tests.fixtures.embedded import Up

SPEC = {
    "task": "translation",
    "model": {"width": 8},
    "training": {"steps": 10, "batch_size": 8, "device": "cpu"},
    "monitor": {"log_every": 5, "sample_every": 5, "checkpoint_every": 5, "eval_every": 10,
                "eval_samples": 100, "metrics": []},
}  # fmt: skip


@pytest.fixture(scope="module")
def edges(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    digits = load_digits("train")
    inputs = edge_map(digits.data[:300])[:, 0].numpy()
    path = tmp_path_factory.mktemp("pairs") / "edges2digits.npz"
    write_pack(path, digits.data[:300, 0].numpy(), inputs=inputs)
    return path, inputs


@pytest.fixture(scope="module")
def trained(client: Client, edges: tuple[Path, np.ndarray]) -> Job:
    dataset = client.datasets.upload(edges[0], "edges2digits")
    assert dataset.image_shape == [8, 8, 1]
    job = client.jobs.create(SPEC | {"dataset": {"id": dataset.id}})
    finished = client.jobs.wait(job.id, timeout=180)
    assert finished.status == "succeeded", finished.error
    assert finished.model_id is not None
    return finished


def test_the_worker_trains_a_translation_and_the_sdk_translates(
    client: Client, trained: Job, edges: tuple[Path, np.ndarray], service: Up
) -> None:
    assert trained.model_id is not None
    model = client.models.get(trained.model_id)
    assert model.spec["task"] == "translation" and model.spec["model"]["architecture"] == "unet"
    outputs = client.models.translate(trained.model_id, edges[1][:5])
    assert outputs.shape == (5, 8, 8) and outputs.dtype == np.uint8
    assert np.array_equal(client.models.translate(trained.model_id, edges[1][:5]), outputs)

    async def translate_async() -> np.ndarray:
        async with AsyncClient(service.url, service.key()) as async_client:
            return await async_client.models.translate(trained.model_id or "", edges[1][:5])

    assert np.array_equal(asyncio.run(translate_async()), outputs)
    with pytest.raises(APIError) as refused:
        client.models.sample(trained.model_id, n=4)
    assert refused.value.param == "model"


def test_the_client_cli_translates_a_png(
    service: Up,
    trained: Job,
    edges: tuple[Path, np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GANFORGE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("GANFORGE_URL", service.url)
    monkeypatch.setenv("GANFORGE_API_KEY", service.key())
    source = tmp_path / "edge.png"
    Image.fromarray(edges[1][0]).save(source)
    out = tmp_path / "out.png"
    result = CliRunner().invoke(
        app, ["translate", trained.model_id or "", "--input", str(source), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (8, 8)
