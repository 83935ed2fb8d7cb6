"""Requests a hostile client sends: each is a clear 4xx naming what is wrong, changes nothing,
and costs bounded memory."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from store.models import Job
from tests.api.conftest import Account, assert_error, make_settings

TINY = {
    "dataset": {"builtin": "digits"},
    "model": {"image_size": 8, "width": 8, "latent_dim": 16},
    "training": {"steps": 4, "batch_size": 16},
}
HUGE = "9" * 20


@pytest.fixture
def job_id(client: TestClient, account: Account) -> str:
    response = client.post("/v1/jobs", headers=account.headers, json=TINY)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def jobs_of(sessions: sessionmaker[Session], account: Account) -> int:
    with sessions() as session:
        query = select(func.count()).select_from(Job).where(Job.tenant_id == account.tenant_id)
        return int(session.scalar(query) or 0)


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/events?after=" + HUGE, "after"),
        ("/samples?after=" + HUGE, "after"),
        ("/checkpoints?after=" + HUGE, "after"),
        ("/metrics?after_step=" + HUGE, "after_step"),
        ("/samples/" + HUGE + ".png", "step"),
        ("/stream?after=" + HUGE, "after"),
        ("/events?after=-1", "after"),
        ("/metrics?limit=" + HUGE, "limit"),
        ("/metrics?" + "&".join(f"name=m{k}" for k in range(60)), "name"),
        ("/metrics?name=" + "x" * 100, "name.0"),
    ],
)
def test_integers_and_lists_in_queries_and_paths_are_bounded(
    client: TestClient, account: Account, job_id: str, path: str, param: str
) -> None:
    assert_error(client.get(f"/v1/jobs/{job_id}{path}", headers=account.headers), 422, None, param)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/job_%00abc",
        "/v1/jobs/" + "a" * 200,
        "/v1/models/mdl_%F0%9F%98%80",
        "/v1/datasets/ds_a%20b",
    ],
)
def test_malformed_ids_are_422(client: TestClient, account: Account, path: str) -> None:
    assert client.get(path, headers=account.headers).status_code == 422


@pytest.mark.parametrize("cursor", ["abc", "٣", "²", HUGE, "3.0", " 3", "-1"])
def test_last_event_id_accepts_ascii_digits_of_bounded_length_only(
    client: TestClient, account: Account, job_id: str, cursor: str
) -> None:
    headers = account.headers | {"Last-Event-ID": cursor.encode()}
    response = client.get(f"/v1/jobs/{job_id}/stream", headers=headers)
    assert_error(response, 422, "invalid_request", "Last-Event-ID")


def test_a_valid_last_event_id_resumes_after_it(
    client: TestClient, account: Account, job_id: str
) -> None:
    client.post(f"/v1/jobs/{job_id}/cancel", headers=account.headers)  # the stream then ends
    headers = account.headers | {"Last-Event-ID": "1"}
    with client.stream("GET", f"/v1/jobs/{job_id}/stream", headers=headers) as response:
        text = "".join(response.iter_text())
    assert "id: 1\n" not in text and "id: 2\n" in text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"dataset": {"builtin": "digits"}, "dataset": {"builtin": "mnist"}}', "duplicate key"),
        (b'{"dataset": {"builtin": "digits"}, "loss": {"r1": NaN}}', "NaN"),
        (b'{"dataset": {"builtin": "digits"}, "loss": {"r1": Infinity}}', "Infinity"),
        (b'{"dataset": {"builtin": "digits"}, "loss": {"r1": -Infinity}}', "Infinity"),
        (b'{"dataset": {"builtin": "digits"}, "loss": {"r1": 1e999}}', "out of range"),
        (b'{"training": {"steps": ' + b"9" * 5000 + b"}}", "digits"),
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
        (b'{"dataset": "\xff\xfe"}', "UTF-8"),
        (b'{"dataset": ', "Expecting value"),
    ],
)
def test_malformed_json_is_400_and_stores_nothing(
    client: TestClient,
    account: Account,
    sessions: sessionmaker[Session],
    body: bytes,
    reason: str,
) -> None:
    headers = account.headers | {"Content-Type": "application/json"}
    error = assert_error(
        client.post("/v1/jobs", headers=headers, content=body), 400, "invalid_json"
    )
    assert reason in error["message"]
    assert jobs_of(sessions, account) == 0


def test_nan_is_refused_in_a_sampling_request_too(client: TestClient, account: Account) -> None:
    body = b'{"n": 4, "truncation": NaN}'
    headers = account.headers | {"Content-Type": "application/json"}
    response = client.post("/v1/models/mdl_missing/samples", headers=headers, content=body)
    assert_error(response, 400, "invalid_json")


def test_a_json_body_over_the_limit_is_413(
    tmp_path: Path, pg_url: str, account: Account, sessions: sessionmaker[Session]
) -> None:
    settings = make_settings(tmp_path, pg_url, max_json_body_bytes=10_000)
    with TestClient(create_app(settings)) as client:
        spec = {**TINY, "padding": "x" * 20_000}
        response = client.post("/v1/jobs", headers=account.headers, json=spec)
        assert_error(response, 413, "payload_too_large")

        def chunks() -> Any:  # no Content-Length: counted as it streams
            yield json.dumps(spec).encode()

        headers = account.headers | {"Content-Type": "application/json"}
        response = client.post("/v1/jobs", headers=headers, content=chunks())
        assert_error(response, 413, "payload_too_large")
    assert jobs_of(sessions, account) == 0


def test_a_flood_of_invalid_items_gives_a_bounded_answer_and_bounded_memory(
    client: TestClient, account: Account
) -> None:
    """Close to the body limit, as many bad fields as fit: a handful of problems come back, and
    validating them costs a few MB, not gigabytes."""
    spec = {**TINY, "model": {f"k{i}": 0 for i in range(70_000)}}
    body = json.dumps(spec).encode()
    assert len(body) < 1 << 20
    headers = account.headers | {"Content-Type": "application/json"}
    tracemalloc.start()
    try:
        response = client.post("/v1/jobs", headers=headers, content=body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    error = assert_error(response, 422, "invalid_spec", "model.k0")
    assert len(error["message"].splitlines()) <= 6 and "more problem(s)" in error["message"]
    assert len(response.content) < 4096
    assert peak < 200 << 20, f"validation peaked at {peak / 2**20:.0f} MiB"

    many = {**TINY, "monitor": {"metrics": ["bogus"] * 100_000}}
    error = assert_error(
        client.post("/v1/jobs", headers=account.headers, json=many), 422, None, "monitor.metrics"
    )
    assert len(error["message"]) < 500


def test_too_many_or_too_large_headers_are_431(client: TestClient, account: Account) -> None:
    many = account.headers | {f"X-Filler-{k}": "1" for k in range(100)}
    assert_error(client.get("/v1/jobs", headers=many), 431, "headers_too_large")
    large = account.headers | {"X-Filler": "x" * 20_000}
    assert_error(client.get("/v1/jobs", headers=large), 431, "headers_too_large")
    assert client.get("/v1/jobs", headers=account.headers).status_code == 200


@pytest.mark.parametrize("key", ["caf\u00e9", "a b", "tab\tkey", "x" * 256, ""])
def test_idempotency_keys_are_visible_ascii_of_bounded_length(
    client: TestClient, account: Account, sessions: sessionmaker[Session], key: str
) -> None:
    headers = account.headers | {"Idempotency-Key": key.encode()}
    assert_error(client.post("/v1/jobs", headers=headers, json=TINY), 422, None, "Idempotency-Key")
    assert jobs_of(sessions, account) == 0


def test_metrics_leak_nothing_per_tenant(client: TestClient, account: Account, job_id: str) -> None:
    client.get(f"/v1/jobs/{job_id}", headers=account.headers)
    text = client.get("/metrics").text
    assert "ganforge_http_requests" in text and "/v1/jobs/{job_id}" in text
    assert job_id not in text and account.tenant_id not in text and account.key not in text


def test_metrics_can_be_put_behind_a_token(tmp_path: Path, pg_url: str) -> None:
    settings = make_settings(tmp_path, pg_url, metrics_token="s3cret")
    with TestClient(create_app(settings)) as client:
        assert_error(client.get("/metrics"), 401, "unauthorized", "Authorization")
        wrong = {"Authorization": "Bearer nope"}
        assert_error(client.get("/metrics", headers=wrong), 401)
        right = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200 and "ganforge_http_requests" in right.text
