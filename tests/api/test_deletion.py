"""DELETE /v1/jobs/{id} and /v1/models/{id}: rows and stored objects go together; nothing else
changes, and a refusal changes nothing."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from store import jobs as store_jobs
from store.db import session_scope
from store.models import Checkpoint, Job, JobEvent, Metric, Sample, TrainedModel
from store.storage import ObjectStorage, checkpoint_key, sample_key
from tests.api.conftest import Account, Publish, assert_error
from tests.api.test_jobs import TINY, run_as_worker


def finished_job(
    client: TestClient, account: Account, sessions: sessionmaker[Session], storage: ObjectStorage
) -> str:
    """A job that failed at step 2 with metrics, a sample grid and a checkpoint, stored."""
    job_id = client.post("/v1/jobs", headers=account.headers, json=TINY).json()["id"]
    run_as_worker(sessions, job_id)
    with session_scope(sessions) as session:
        store_jobs.record_metrics(session, job_id=job_id, step=2, metrics={"d_loss": 0.5})
        storage.put_bytes(sample_key(job_id, 2), b"png")
        store_jobs.record_sample(session, job_id=job_id, step=2, storage_key=sample_key(job_id, 2))
        storage.put_bytes(checkpoint_key(job_id, 2), b"pt")
        store_jobs.record_checkpoint(
            session, job_id=job_id, step=2, storage_key=checkpoint_key(job_id, 2)
        )
        store_jobs.finish_job(
            session, job_id=job_id, worker_id="w1", status="failed", error_code="diverged",
            error_message="NaN", step=2,
        )  # fmt: skip
    return job_id


def rows_of(sessions: sessionmaker[Session], job_id: str) -> dict[str, int]:
    with session_scope(sessions) as session:
        return {
            table.__name__: session.scalar(
                select(func.count()).select_from(table).where(table.job_id == job_id)  # type: ignore[attr-defined]
            )
            or 0
            for table in (JobEvent, Metric, Sample, Checkpoint)
        } | {"Job": session.scalar(select(func.count()).where(Job.id == job_id)) or 0}


def test_deleting_a_finished_job_removes_its_rows_and_objects_only(
    client: TestClient, account: Account, sessions: sessionmaker[Session], storage: ObjectStorage
) -> None:
    job_id = finished_job(client, account, sessions, storage)
    kept = finished_job(client, account, sessions, storage)
    assert storage.list(f"jobs/{job_id}/") == [checkpoint_key(job_id, 2), sample_key(job_id, 2)]
    before = storage.list("")

    response = client.delete(f"/v1/jobs/{job_id}", headers=account.headers)

    assert response.status_code == 204 and response.content == b""
    assert rows_of(sessions, job_id) == dict.fromkeys(
        ["JobEvent", "Metric", "Sample", "Checkpoint", "Job"], 0
    )
    assert storage.list("") == [key for key in before if not key.startswith(f"jobs/{job_id}/")]
    assert rows_of(sessions, kept)["Metric"] == 1 and storage.list(f"jobs/{kept}/")
    assert_error(client.get(f"/v1/jobs/{job_id}", headers=account.headers), 404, "not_found")
    again = client.delete(f"/v1/jobs/{job_id}", headers=account.headers)
    assert_error(again, 404, "not_found")


def test_a_queued_or_running_job_cannot_be_deleted(
    client: TestClient, account: Account, sessions: sessionmaker[Session]
) -> None:
    queued = client.post("/v1/jobs", headers=account.headers, json=TINY).json()["id"]
    running = client.post("/v1/jobs", headers=account.headers, json=TINY).json()["id"]
    run_as_worker(sessions, running)

    for job_id, status in ((queued, "queued"), (running, "running")):
        response = client.delete(f"/v1/jobs/{job_id}", headers=account.headers)
        body = assert_error(response, 409, "conflict")
        assert f"is {status}" in body["message"] and "cancel" in body["message"]
        assert rows_of(sessions, job_id)["Job"] == 1


def test_a_model_is_deleted_before_its_job_and_the_job_stays(
    client: TestClient,
    account: Account,
    publish: Publish,
    sessions: sessionmaker[Session],
    storage: ObjectStorage,
) -> None:
    model_id = publish(account)
    job_id = client.get(f"/v1/models/{model_id}", headers=account.headers).json()["job_id"]
    sample = {"labels": [1], "n": 2, "format": "npy"}
    assert client.post(f"/v1/models/{model_id}/samples", headers=account.headers, json=sample)
    blocked = client.delete(f"/v1/jobs/{job_id}", headers=account.headers)
    assert model_id in assert_error(blocked, 409, "conflict")["message"]
    assert storage.list(f"models/{model_id}/")

    response = client.delete(f"/v1/models/{model_id}", headers=account.headers)

    assert response.status_code == 204
    assert storage.list(f"models/{model_id}/") == []
    with session_scope(sessions) as session:
        assert session.get(TrainedModel, model_id) is None
    assert_error(client.get(f"/v1/models/{model_id}", headers=account.headers), 404, "not_found")
    gone = client.post(f"/v1/models/{model_id}/samples", headers=account.headers, json=sample)
    assert_error(gone, 404, "not_found")  # not served from the API's model cache
    job = client.get(f"/v1/jobs/{job_id}", headers=account.headers).json()
    assert job["status"] == "succeeded"
    assert client.delete(f"/v1/jobs/{job_id}", headers=account.headers).status_code == 204


def test_another_tenant_deletes_nothing(
    client: TestClient,
    account: Account,
    other: Account,
    publish: Publish,
    sessions: sessionmaker[Session],
    storage: ObjectStorage,
) -> None:
    job_id = finished_job(client, account, sessions, storage)
    model_id = publish(account)

    assert_error(client.delete(f"/v1/jobs/{job_id}", headers=other.headers), 404, "not_found")
    assert_error(client.delete(f"/v1/models/{model_id}", headers=other.headers), 404, "not_found")
    assert rows_of(sessions, job_id)["Job"] == 1 and storage.list(f"models/{model_id}/")
