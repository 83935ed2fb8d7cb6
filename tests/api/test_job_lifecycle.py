"""Pause, resume and continue over HTTP, on PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session, sessionmaker

from api.config import ApiSettings
from store import jobs as store_jobs
from store.db import session_scope
from store.storage import ObjectStorage, checkpoint_key
from tests.api.conftest import Account, assert_error, queued_messages
from tests.api.test_jobs import TINY, run_as_worker


def post(client: TestClient, account: Account, path: str, body: object = None) -> Response:
    return client.post(path, headers=account.headers, json=body)


def test_pause_and_resume_a_queued_job(
    client: TestClient, account: Account, settings: ApiSettings
) -> None:
    job_id = post(client, account, "/v1/jobs", TINY).json()["id"]
    sent = len(queued_messages(settings))

    paused = post(client, account, f"/v1/jobs/{job_id}/pause")
    again = post(client, account, f"/v1/jobs/{job_id}/pause")

    assert paused.status_code == again.status_code == 200
    body = again.json()
    assert (body["status"], body["phase"], body["pause_requested"]) == ("paused", None, False)
    resumed = post(client, account, f"/v1/jobs/{job_id}/resume").json()
    assert (resumed["status"], resumed["phase"]) == ("queued", "queued")
    assert len(queued_messages(settings)) == sent + 1  # enqueued again
    assert post(client, account, f"/v1/jobs/{job_id}/resume").json()["status"] == "queued"
    assert len(queued_messages(settings)) == sent + 1  # a no-op the second time


def test_pausing_a_running_job_flags_it_for_its_worker(
    client: TestClient, account: Account, sessions: sessionmaker[Session]
) -> None:
    job_id = post(client, account, "/v1/jobs", TINY).json()["id"]
    run_as_worker(sessions, job_id)

    body = post(client, account, f"/v1/jobs/{job_id}/pause").json()

    assert (body["status"], body["pause_requested"]) == ("running", True)
    events = client.get(f"/v1/jobs/{job_id}/events", headers=account.headers).json()["data"]
    assert events[-1]["code"] == "pause_requested"


def test_a_finished_job_neither_pauses_nor_resumes(
    client: TestClient, account: Account, other: Account
) -> None:
    job_id = post(client, account, "/v1/jobs", TINY).json()["id"]
    post(client, account, f"/v1/jobs/{job_id}/cancel")
    for action in ("pause", "resume"):
        assert_error(post(client, account, f"/v1/jobs/{job_id}/{action}"), 409, "conflict")
        assert_error(post(client, other, f"/v1/jobs/{job_id}/{action}"), 404, "not_found")


def finished_with_checkpoint(
    client: TestClient, account: Account, sessions: sessionmaker[Session], storage: ObjectStorage
) -> str:
    job_id = post(client, account, "/v1/jobs", TINY).json()["id"]
    run_as_worker(sessions, job_id)
    storage.put_bytes(checkpoint_key(job_id, 4), b"the training state at step 4")
    with session_scope(sessions) as session:
        store_jobs.record_checkpoint(
            session, job_id=job_id, step=4, storage_key=checkpoint_key(job_id, 4),
            metrics={"d_loss": 0.5},
        )  # fmt: skip
        store_jobs.finish_job(session, job_id=job_id, worker_id="w1", status="succeeded", step=4)
    return job_id


def test_continue_queues_a_new_job_from_a_copy_of_the_newest_checkpoint(
    client: TestClient,
    account: Account,
    sessions: sessionmaker[Session],
    storage: ObjectStorage,
    settings: ApiSettings,
) -> None:
    source = finished_with_checkpoint(client, account, sessions, storage)
    sent = len(queued_messages(settings))

    response = post(client, account, f"/v1/jobs/{source}/continue", {"steps": 10})

    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["status"], job["continued_from"], job["progress"]["total"]) == (
        "queued",
        source,
        10,
    )
    assert job["spec"]["training"]["steps"] == 10
    assert job["spec"] | {"training": None} == client.get(
        f"/v1/jobs/{source}", headers=account.headers
    ).json()["spec"] | {"training": None}
    assert len(queued_messages(settings)) == sent + 1
    [checkpoint] = client.get(f"/v1/jobs/{job['id']}/checkpoints", headers=account.headers).json()[
        "data"
    ]
    assert (checkpoint["step"], checkpoint["metrics"]) == (4, {"d_loss": 0.5})
    assert storage.get_bytes(checkpoint_key(job["id"], 4)) == b"the training state at step 4"
    events = client.get(f"/v1/jobs/{job['id']}/events", headers=account.headers).json()["data"]
    assert f"continues job {source} from its checkpoint at step 4 to step 10" in [
        e["message"] for e in events
    ]
    assert client.get(f"/v1/jobs/{source}", headers=account.headers).json()["status"] == "succeeded"


def test_continue_refuses_what_cannot_be_continued(
    client: TestClient,
    account: Account,
    other: Account,
    sessions: sessionmaker[Session],
    storage: ObjectStorage,
) -> None:
    source = finished_with_checkpoint(client, account, sessions, storage)
    assert_error(post(client, account, f"/v1/jobs/{source}/continue", {"steps": 4}), 422,
                 param="steps")  # fmt: skip
    assert_error(post(client, account, f"/v1/jobs/{source}/continue", {"steps": "9"}), 422)
    assert_error(post(client, account, f"/v1/jobs/{source}/continue", {}), 422)
    assert_error(post(client, other, f"/v1/jobs/{source}/continue", {"steps": 9}), 404)
    queued = post(client, account, "/v1/jobs", TINY).json()["id"]
    running = assert_error(post(client, account, f"/v1/jobs/{queued}/continue", {"steps": 9}), 409)
    assert "only a finished job" in running["message"]
    post(client, account, f"/v1/jobs/{queued}/cancel")
    bare = assert_error(post(client, account, f"/v1/jobs/{queued}/continue", {"steps": 9}), 409)
    assert "no checkpoint" in bare["message"]
