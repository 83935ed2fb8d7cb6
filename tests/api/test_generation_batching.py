"""Concurrent sampling requests for one model share forward passes, and nobody's bytes change."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.services.generation import ForwardBatcher
from gan_engine.artifacts import GeneratorArtifact
from gan_engine.spec import Spec
from tests.api.conftest import Account, Publish


@pytest.fixture(params=["off", "auto"])
def artifact(request: Any, artifacts: dict[str, tuple[Spec, dict[str, bytes]]]) -> Any:
    _, files = artifacts["digits"]
    return GeneratorArtifact.from_bytes(
        files["generator.safetensors"], files["config.json"], precision=request.param
    )


def test_coalesced_forward_passes_give_each_request_what_it_would_get_alone(
    artifact: GeneratorArtifact,
) -> None:
    sizes = [1, 5, 16, 17, 3, 40, 2]
    requests = [
        (artifact.latents(n, seed=seed), torch.arange(n) % 10) for seed, n in enumerate(sizes)
    ]
    batcher = ForwardBatcher(max_batch=512)

    async def all_at_once() -> list[torch.Tensor]:
        return await asyncio.gather(*(batcher.forward(artifact, z, y) for z, y in requests))

    shared = asyncio.run(all_at_once())
    assert batcher.passes == 1
    for (z, labels), got in zip(requests, shared, strict=True):
        assert torch.equal(got, artifact.forward(z, labels))


def test_a_lone_request_runs_at_once_and_arrivals_during_a_pass_share_the_next(
    artifact: GeneratorArtifact, monkeypatch: pytest.MonkeyPatch
) -> None:
    batcher = ForwardBatcher(max_batch=512)
    forward, sizes = artifact.forward, []

    def slow_forward(z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        sizes.append(len(z))
        time.sleep(0.2)  # a long pass, so that the others arrive during it
        return forward(z, labels)

    monkeypatch.setattr(artifact, "forward", slow_forward)
    z, labels = artifact.latents(4, seed=0), torch.arange(4)

    async def run() -> None:
        first = asyncio.ensure_future(batcher.forward(artifact, z, labels))
        await asyncio.sleep(0.05)  # the first pass has started, alone
        assert sizes == [4]
        await asyncio.gather(first, *(batcher.forward(artifact, z, labels) for _ in range(3)))

    asyncio.run(run())
    assert batcher.passes == 2 and sizes == [4, 3 * 16]  # the three late ones, aligned, together


def test_a_full_batch_is_run_at_once_and_a_huge_request_alone(
    artifact: GeneratorArtifact,
) -> None:
    batcher = ForwardBatcher(max_batch=32)
    z = artifact.latents(16, seed=1)

    async def run() -> list[torch.Tensor]:
        small = [batcher.forward(artifact, z, torch.zeros(16, dtype=torch.int64)) for _ in range(4)]
        huge = batcher.forward(
            artifact, artifact.latents(64, seed=2), torch.zeros(64, dtype=torch.int64)
        )
        return await asyncio.wait_for(asyncio.gather(*small, huge), timeout=30)

    outputs = asyncio.run(run())
    assert len(outputs) == 5 and batcher.passes == 3  # two full pairs, and the huge one alone
    assert all(torch.equal(outputs[0], out) for out in outputs[1:4])


def test_concurrent_http_requests_share_passes_and_get_their_own_bytes(
    client: TestClient, account: Account, publish: Publish, app: FastAPI
) -> None:
    model_id = publish(account)
    bodies = [{"n": 4 + k, "seed": k, "format": "npy"} for k in range(8)]
    alone = [
        client.post(f"/v1/models/{model_id}/samples", headers=account.headers, json=b).content
        for b in bodies
    ]
    passes_before = app.state.batcher.passes
    results: dict[int, bytes] = {}
    barrier = threading.Barrier(len(bodies))

    def send(k: int) -> None:
        barrier.wait()
        response = client.post(
            f"/v1/models/{model_id}/samples", headers=account.headers, json=bodies[k]
        )
        assert response.status_code == 200, response.text
        results[k] = response.content

    threads = [threading.Thread(target=send, args=(k,)) for k in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [results[k] for k in range(len(bodies))] == alone
    assert app.state.batcher.passes - passes_before < len(bodies)
