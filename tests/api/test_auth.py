from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from store.auth import revoke_api_key
from store.db import session_scope
from tests.api.conftest import Account, assert_error, make_settings

PROTECTED = [
    ("GET", "/v1/datasets"),
    ("POST", "/v1/datasets"),
    ("GET", "/v1/datasets/ds_x"),
    ("DELETE", "/v1/datasets/ds_x"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/job_x"),
    ("POST", "/v1/jobs/job_x/cancel"),
    ("GET", "/v1/jobs/job_x/events"),
    ("GET", "/v1/jobs/job_x/metrics"),
    ("GET", "/v1/jobs/job_x/samples"),
    ("GET", "/v1/jobs/job_x/samples/10.png"),
    ("GET", "/v1/jobs/job_x/checkpoints"),
    ("GET", "/v1/jobs/job_x/stream"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/mdl_x"),
    ("POST", "/v1/models/mdl_x/samples"),
    ("GET", "/v1/models/mdl_x/export"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_v1_route_needs_a_key(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path)
    error = assert_error(response, 401, "unauthorized", "Authorization")
    assert "Bearer" in error["message"]
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    ["Bearer gf_not-a-real-key", "Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer ", "gf_abc"],
)
def test_a_bad_key_is_401(client: TestClient, header: str) -> None:
    assert_error(client.get("/v1/jobs", headers={"Authorization": header}), 401, "unauthorized")


def test_a_valid_key_works_until_revoked(
    tmp_path: Path, pg_url: str, account: Account, sessions: sessionmaker[Session]
) -> None:
    with TestClient(create_app(make_settings(tmp_path, pg_url, api_key_cache_s=0))) as client:
        assert client.get("/v1/jobs", headers=account.headers).status_code == 200
        with session_scope(sessions) as session:
            assert revoke_api_key(session, key_id=account.key_id)
        error = assert_error(client.get("/v1/jobs", headers=account.headers), 401, "unauthorized")
        assert "revoked" in error["message"]


def test_a_revoked_key_stops_working_within_the_key_cache_time(
    tmp_path: Path, pg_url: str, account: Account, sessions: sessionmaker[Session]
) -> None:
    """A verified key is remembered API_KEY_CACHE_S; revoked, it fails once that has passed."""
    ttl = 0.5
    with TestClient(create_app(make_settings(tmp_path, pg_url, api_key_cache_s=ttl))) as client:
        assert client.get("/v1/jobs", headers=account.headers).status_code == 200
        with session_scope(sessions) as session:
            assert revoke_api_key(session, key_id=account.key_id)
        revoked_at = time.monotonic()
        assert client.get("/v1/jobs", headers=account.headers).status_code == 200  # remembered
        while client.get("/v1/jobs", headers=account.headers).status_code == 200:
            assert time.monotonic() - revoked_at < ttl + 1.0, "the revoked key outlived its TTL"
            time.sleep(0.05)  # polling interval


def test_probes_need_no_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/metrics").status_code == 200


def test_unknown_route_is_an_error_envelope(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing-here"), 404, "not_found")
    assert_error(client.put("/healthz"), 405, "method_not_allowed")
