"""Cheap polls: ETags (304 while unchanged) and long polls that answer when the job changes."""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from store.db import session_scope
from store.models import Job
from tests.api.conftest import Account, assert_error

TINY = {
    "dataset": {"builtin": "digits"},
    "model": {"image_size": 8, "width": 8, "latent_dim": 16},
    "training": {"steps": 4, "batch_size": 16},
}


def submitted(client: TestClient, account: Account) -> str:
    response = client.post("/v1/jobs", headers=account.headers, json=TINY)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def later(seconds: float, action: Any) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)  # the change the long poll waits for happens meanwhile
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_an_unchanged_job_is_a_304_and_a_changed_one_a_new_etag(
    client: TestClient, account: Account
) -> None:
    job_id = submitted(client, account)
    first = client.get(f"/v1/jobs/{job_id}", headers=account.headers)
    etag = first.headers["etag"]
    assert first.status_code == 200 and etag.startswith('"') and first.json()["id"] == job_id
    again = client.get(f"/v1/jobs/{job_id}", headers=account.headers | {"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    client.post(f"/v1/jobs/{job_id}/cancel", headers=account.headers)
    changed = client.get(f"/v1/jobs/{job_id}", headers=account.headers | {"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["status"] == "cancelled"


def test_a_long_poll_answers_as_soon_as_the_status_changes(
    client: TestClient, account: Account
) -> None:
    job_id = submitted(client, account)
    canceller = later(
        0.3, lambda: client.post(f"/v1/jobs/{job_id}/cancel", headers=account.headers)
    )
    started = time.monotonic()
    response = client.get(f"/v1/jobs/{job_id}?wait=20", headers=account.headers)
    took = time.monotonic() - started
    canceller.join()
    assert response.json()["status"] == "cancelled"
    assert 0.25 < took < 5, took


def test_a_long_poll_with_an_etag_answers_on_any_change(
    client: TestClient, account: Account, sessions: sessionmaker[Session]
) -> None:
    job_id = submitted(client, account)
    etag = client.get(f"/v1/jobs/{job_id}", headers=account.headers).headers["etag"]

    def progress() -> None:
        with session_scope(sessions) as session:
            session.execute(update(Job).where(Job.id == job_id).values(step=2))

    writer = later(0.3, progress)
    response = client.get(
        f"/v1/jobs/{job_id}?wait=20", headers=account.headers | {"If-None-Match": etag}
    )
    writer.join()
    assert response.status_code == 200 and response.json()["progress"]["step"] == 2


def test_a_long_poll_without_change_returns_after_its_wait_and_a_finished_job_at_once(
    client: TestClient, account: Account
) -> None:
    job_id = submitted(client, account)
    started = time.monotonic()
    response = client.get(f"/v1/jobs/{job_id}?wait=0.5", headers=account.headers)
    assert response.json()["status"] == "queued" and time.monotonic() - started >= 0.5
    client.post(f"/v1/jobs/{job_id}/cancel", headers=account.headers)
    started = time.monotonic()
    client.get(f"/v1/jobs/{job_id}?wait=30", headers=account.headers)
    assert time.monotonic() - started < 2


def test_wait_is_bounded(client: TestClient, account: Account) -> None:
    job_id = submitted(client, account)
    for bad in ("61", "-1", "nan", "1e9"):
        assert_error(
            client.get(f"/v1/jobs/{job_id}?wait={bad}", headers=account.headers), 422, None, "wait"
        )
