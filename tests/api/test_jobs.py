from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from api.config import ApiSettings
from api.services.reaper import reap_once
from store import jobs as store_jobs
from store.db import session_scope
from store.models import Job, utcnow
from store.storage import ObjectStorage, sample_key
from tests.api.conftest import Account, assert_error, queued_messages

TINY = {
    "dataset": {"builtin": "digits"},
    "model": {"image_size": 8, "width": 8, "latent_dim": 16},
    "training": {"steps": 4, "batch_size": 16},
}


def submit(
    client: TestClient, account: Account, spec: dict[str, Any] | None = None, **headers: str
) -> Any:
    return client.post("/v1/jobs", headers=account.headers | headers, json=spec or TINY)


def run_as_worker(sessions: sessionmaker[Session], job_id: str, worker: str = "w1") -> None:
    with session_scope(sessions) as session:
        assert store_jobs.claim_job(session, job_id=job_id, worker_id=worker, lease_s=60)


# --- submission --------------------------------------------------------------------------------


def test_submit_stores_the_normalised_spec_and_enqueues(
    client: TestClient, account: Account, settings: ApiSettings
) -> None:
    before = len(queued_messages(settings))
    response = submit(client, account)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["id"].startswith("job_") and job["status"] == "queued"
    assert job["spec"]["loss"]["kind"] == "non_saturating"  # defaults filled in
    assert job["spec"]["model"]["d_norm"] == "batch"  # "auto" resolved
    assert job["progress"] == {
        "step": 0,
        "total": 4,
        "fraction": 0.0,
        "images_per_s": None,
        "eta_s": None,
    }
    assert job["error"] is None and job["model_id"] is None and job["attempt"] == 0
    messages = queued_messages(settings)
    assert len(messages) == before + 1
    assert job["id"].encode() in messages[-1].read_bytes()


def test_a_broker_failure_still_answers_202(
    client: TestClient, account: Account, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(app.state.celery, "send_task", refuse)
    response = submit(client, account)
    assert response.status_code == 202 and response.json()["status"] == "queued"


@pytest.mark.parametrize(
    ("spec", "param", "needle"),
    [
        ({**TINY, "model": {"architecture": "gan"}}, "model.architecture", "mlp"),
        (
            {**TINY, "loss": {"kind": "hinge", "weight_clip": 0.01}},
            "loss.weight_clip",
            "wasserstein",
        ),
        ({**TINY, "surprise": 1}, "surprise", "Extra inputs"),
        ({"model": {}}, "dataset", "required"),
        ({"dataset": {"builtin": "ring8"}}, "model.architecture", "mlp"),
        (
            {
                "dataset": {"builtin": "ring8"},
                "model": {"architecture": "mlp"},
                "augment": {"kind": "diffaugment"},
            },
            "augment",
            "2-D points",
        ),
        (
            {**TINY, "dataset": {"builtin": "digits", "subset": {"per_class": 1000}}},
            "dataset.subset.per_class",
            "1,438",
        ),
        ({**TINY, "training": {"steps": 2_000_000}}, "training.steps", "at most"),
        ({**TINY, "dataset": {"id": "ds_missing"}}, "dataset.id", "no dataset"),
        ({**TINY, "dataset": {"path": "/etc/passwd"}}, "dataset.path", "upload"),
        (
            {**TINY, "optimizer": {"generator": {"lr": -1.0}}},
            "optimizer.generator.lr",
            "learning rate",
        ),
        ({**TINY, "model": {"width": True}}, "model.width", "valid integer"),
        ({**TINY, "training": {"steps": 4, "batch_size": 16.0}}, "training.batch_size", "integer"),
        (
            {
                "dataset": {"builtin": "fashion-mnist"},
                "model": {"width": 512, "image_size": 64},
                "training": {"batch_size": 4096},
            },
            "training.batch_size",
            "MAX_JOB_MEMORY_BYTES",
        ),
        (
            {"dataset": {"builtin": "fashion-mnist"}, "model": {"width": 1024, "image_size": 64}},
            "model.width",
            "lower model.width",
        ),
    ],
)
def test_spec_errors_are_422_naming_the_field(
    client: TestClient, account: Account, spec: dict[str, Any], param: str, needle: str
) -> None:
    error = assert_error(submit(client, account, spec), 422, "invalid_spec", param)
    assert needle in error["message"]


def test_a_spec_that_cannot_fit_names_the_batch_that_would(
    client: TestClient, account: Account
) -> None:
    """A spec that validates but whose training would take far more memory than the per-job
    budget is refused before it can pin a worker; the message says what would fit."""
    spec = {
        "dataset": {"builtin": "fashion-mnist"},
        "model": {"width": 512, "image_size": 64},
        "training": {"batch_size": 4096},
    }
    error = assert_error(submit(client, account, spec), 422, "invalid_spec", "training.batch_size")
    assert "GiB" in error["message"] and "to train" in error["message"]
    fitting = int(error["message"].split("batch_size to ")[1].split(" ")[0])
    assert 2 <= fitting < 4096
    spec["training"]["batch_size"] = fitting
    assert submit(client, account, spec).status_code == 202


@pytest.mark.parametrize(
    "request_body",
    [
        {"json": [1, 2]},
        {"content": b""},
        {"content": b"dataset: {builtin: digits}", "headers": {"Content-Type": "text/yaml"}},
        {"data": {"dataset": "digits"}},
    ],
)
def test_body_must_be_a_json_object(
    client: TestClient, account: Account, request_body: dict[str, Any]
) -> None:
    headers = account.headers | request_body.pop("headers", {})
    error = assert_error(
        client.post("/v1/jobs", headers=headers, **request_body), 422, "invalid_spec"
    )
    assert "JSON object" in error["message"]


def test_malformed_json_is_400(client: TestClient, account: Account) -> None:
    bad = client.post(
        "/v1/jobs", headers=account.headers | {"Content-Type": "application/json"}, content=b"{oops"
    )
    assert_error(bad, 400, "invalid_json")


def test_conditioning_needs_a_labelled_dataset(client: TestClient, account: Account) -> None:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, images=np.zeros((4, 8, 8), np.uint8))
    ds = client.post(
        "/v1/datasets", headers=account.headers, files={"file": ("u.npz", buffer.getvalue())}
    ).json()
    spec = {
        **TINY,
        "dataset": {"id": ds["id"]},
        "model": {**TINY["model"], "conditioning": "concat"},
    }
    error = assert_error(submit(client, account, spec), 422, "invalid_spec", "model.conditioning")
    assert "labelled" in error["message"]
    spec["model"]["conditioning"] = "none"
    job = submit(client, account, spec).json()
    assert job["dataset_id"] == ds["id"] and job["spec"]["dataset"]["id"] == ds["id"]


def test_a_subset_needs_a_labelled_dataset(client: TestClient, account: Account) -> None:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, images=np.zeros((4, 8, 8), np.uint8))
    ds = client.post(
        "/v1/datasets", headers=account.headers, files={"file": ("u.npz", buffer.getvalue())}
    ).json()
    spec = {**TINY, "dataset": {"id": ds["id"], "subset": {"per_class": 2}}}
    error = assert_error(submit(client, account, spec), 422, "invalid_spec", "dataset.subset")
    assert "no labels" in error["message"]


def test_a_dataset_of_another_tenant_is_unknown(
    client: TestClient, account: Account, other: Account
) -> None:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, images=np.zeros((4, 8, 8), np.uint8))
    ds = client.post(
        "/v1/datasets", headers=account.headers, files={"file": ("u.npz", buffer.getvalue())}
    ).json()
    spec = {**TINY, "dataset": {"id": ds["id"]}}
    assert_error(submit(client, other, spec), 422, "invalid_spec", "dataset.id")


def test_idempotency_key(
    client: TestClient, account: Account, other: Account, settings: ApiSettings
) -> None:
    first = submit(client, account, **{"Idempotency-Key": "abc"})
    assert first.status_code == 202
    count = len(queued_messages(settings))
    again = submit(client, account, **{"Idempotency-Key": "abc"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert len(queued_messages(settings)) == count  # not enqueued twice
    changed = {**TINY, "training": {**TINY["training"], "steps": 5}}
    error = assert_error(
        submit(client, account, changed, **{"Idempotency-Key": "abc"}), 409, "conflict"
    )
    assert "Idempotency-Key" in error["message"]
    # keys are per tenant
    assert submit(client, other, **{"Idempotency-Key": "abc"}).json()["id"] != first.json()["id"]
    assert_error(
        submit(client, account, **{"Idempotency-Key": "k" * 256}), 422, param="Idempotency-Key"
    )


def test_too_many_active_jobs_is_429(
    client: TestClient, account: Account, settings: ApiSettings
) -> None:
    for _ in range(settings.max_concurrent_jobs_per_tenant):
        assert submit(client, account).status_code == 202
    assert_error(submit(client, account), 429, "limit_exceeded")


# --- reading -----------------------------------------------------------------------------------


def test_list_pagination_and_status_filter(
    client: TestClient, account: Account, other: Account
) -> None:
    ids = [submit(client, account).json()["id"] for _ in range(3)]
    client.post(f"/v1/jobs/{ids[1]}/cancel", headers=account.headers)
    page = client.get("/v1/jobs", headers=account.headers, params={"limit": 2}).json()
    assert [j["id"] for j in page["data"]] == [ids[2], ids[1]] and page["has_more"]
    rest = client.get(
        "/v1/jobs", headers=account.headers, params={"limit": 2, "after": ids[1]}
    ).json()
    assert [j["id"] for j in rest["data"]] == [ids[0]] and not rest["has_more"]
    queued = client.get("/v1/jobs", headers=account.headers, params={"status": "queued"}).json()
    assert [j["id"] for j in queued["data"]] == [ids[2], ids[0]]
    cancelled = client.get("/v1/jobs?status=cancelled", headers=account.headers).json()
    assert [j["id"] for j in cancelled["data"]] == [ids[1]]
    assert client.get("/v1/jobs", headers=other.headers).json()["data"] == []
    assert_error(client.get("/v1/jobs?status=done", headers=account.headers), 422, param="status")
    assert_error(client.get("/v1/jobs?limit=0", headers=account.headers), 422, param="limit")
    assert_error(client.get("/v1/jobs?limit=101", headers=account.headers), 422, param="limit")
    assert_error(client.get("/v1/jobs?after=job_nope", headers=account.headers), 422, param="after")


def test_cancel_a_queued_job(client: TestClient, account: Account) -> None:
    job = submit(client, account).json()
    cancelled = client.post(f"/v1/jobs/{job['id']}/cancel", headers=account.headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    assert_error(
        client.post(f"/v1/jobs/{job['id']}/cancel", headers=account.headers), 409, "conflict"
    )


def test_cancel_a_running_job_flags_it(
    client: TestClient, account: Account, sessions: sessionmaker[Session]
) -> None:
    job = submit(client, account).json()
    run_as_worker(sessions, job["id"])
    body = client.post(f"/v1/jobs/{job['id']}/cancel", headers=account.headers).json()
    assert body["status"] == "running" and body["cancel_requested"] is True


def test_a_running_job_reports_progress_metrics_and_errors(
    client: TestClient, account: Account, sessions: sessionmaker[Session]
) -> None:
    job_id = submit(client, account).json()["id"]
    run_as_worker(sessions, job_id)
    with session_scope(sessions) as session:
        store_jobs.heartbeat(
            session, job_id=job_id, worker_id="w1", lease_s=60, step=2, images_per_s=32.0,
            phase="evaluating", eta_s=1.0,
        )  # fmt: skip
        store_jobs.record_metrics(
            session, job_id=job_id, step=2, metrics={"d_loss": 1.5, "g_loss": float("nan")}
        )
    body = client.get(f"/v1/jobs/{job_id}", headers=account.headers).json()
    assert body["status"] == "running" and body["attempt"] == 1 and body["started_at"]
    assert body["phase"] == "evaluating"
    assert body["progress"] == {
        "step": 2,
        "total": 4,
        "fraction": 0.5,
        "images_per_s": 32.0,
        "eta_s": 1.0,
    }
    assert body["latest_metrics"] == {
        "d_loss": {"step": 2, "value": 1.5},
        "g_loss": {"step": 2, "value": None},
    }
    with session_scope(sessions) as session:
        store_jobs.finish_job(
            session,
            job_id=job_id,
            worker_id="w1",
            status="failed",
            error_code="diverged",
            error_message="loss became NaN",
        )
    body = client.get(f"/v1/jobs/{job_id}", headers=account.headers).json()
    assert body["status"] == "failed" and body["error"] == {
        "code": "diverged",
        "message": "loss became NaN",
    }
    assert body["progress"]["eta_s"] is None and body["phase"] is None


@pytest.fixture
def reported(
    client: TestClient, account: Account, sessions: sessionmaker[Session], storage: ObjectStorage
) -> str:
    """A succeeded job with events, metrics, two sample grids and two checkpoints."""
    job_id = submit(client, account).json()["id"]
    run_as_worker(sessions, job_id)
    with session_scope(sessions) as session:
        for step in (1, 2, 3, 4):
            store_jobs.record_metrics(
                session,
                job_id=job_id,
                step=step,
                metrics={"d_loss": step / 10, "g_loss": -step / 10},
            )
        store_jobs.record_metrics(session, job_id=job_id, step=4, metrics={"fid": 12.5})
        for step in (2, 4):
            storage.put_bytes(sample_key(job_id, step), b"\x89PNG fake " + bytes([step]))
            store_jobs.record_sample(
                session, job_id=job_id, step=step, storage_key=sample_key(job_id, step)
            )
            store_jobs.record_checkpoint(
                session,
                job_id=job_id,
                step=step,
                storage_key=f"jobs/{job_id}/c{step}",
                metrics={"fid": 20.0 - step},
            )
        store_jobs.record_event(
            session,
            job_id=job_id,
            step=3,
            level="warning",
            code="mode_collapse",
            message="samples look alike",
        )
        store_jobs.finish_job(
            session,
            job_id=job_id,
            worker_id="w1",
            status="succeeded",
            step=4,
            summary={"fid": 12.5},
        )
    return job_id


def test_events_are_ordered_and_paginated_by_seq(
    client: TestClient, account: Account, reported: str
) -> None:
    events = client.get(f"/v1/jobs/{reported}/events", headers=account.headers).json()
    assert [e["seq"] for e in events["data"]] == [1, 2, 3, 4] and not events["has_more"]
    assert [e["code"] for e in events["data"]] == ["status", "status", "mode_collapse", "status"]
    assert events["data"][2]["level"] == "warning" and events["data"][2]["step"] == 3
    page = client.get(f"/v1/jobs/{reported}/events?after=1&limit=2", headers=account.headers).json()
    assert [e["seq"] for e in page["data"]] == [2, 3] and page["has_more"]


def test_metrics_time_series(client: TestClient, account: Account, reported: str) -> None:
    url = f"/v1/jobs/{reported}/metrics"
    everything = client.get(url, headers=account.headers).json()
    assert everything["data"]["d_loss"] == [[1, 0.1], [2, 0.2], [3, 0.3], [4, 0.4]]
    assert everything["data"]["fid"] == [[4, 12.5]] and not everything["has_more"]
    assert everything["last_step"] == 4
    some = client.get(
        url, headers=account.headers, params={"name": ["g_loss", "fid"], "after_step": 2}
    ).json()
    assert some["data"] == {"g_loss": [[3, -0.3], [4, -0.4]], "fid": [[4, 12.5]]}
    first = client.get(url, headers=account.headers, params={"limit": 2}).json()
    assert (
        first["data"]["d_loss"] == [[1, 0.1], [2, 0.2]]
        and first["has_more"]
        and first["last_step"] == 2
    )
    unknown = client.get(url, headers=account.headers, params={"name": "nope"}).json()
    assert unknown == {"data": {"nope": []}, "has_more": False, "last_step": None}


def test_samples_and_checkpoints(client: TestClient, account: Account, reported: str) -> None:
    samples = client.get(f"/v1/jobs/{reported}/samples", headers=account.headers).json()
    assert [(s["step"], s["url"]) for s in samples["data"]] == [
        (2, f"/v1/jobs/{reported}/samples/2.png"),
        (4, f"/v1/jobs/{reported}/samples/4.png"),
    ]
    png = client.get(samples["data"][1]["url"], headers=account.headers)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content == b"\x89PNG fake \x04"
    assert_error(
        client.get(f"/v1/jobs/{reported}/samples/3.png", headers=account.headers), 404, param="step"
    )
    later = client.get(f"/v1/jobs/{reported}/samples?after=2", headers=account.headers).json()
    assert [s["step"] for s in later["data"]] == [4]
    checkpoints = client.get(f"/v1/jobs/{reported}/checkpoints", headers=account.headers).json()
    assert [(c["step"], c["metrics"], c["best"]) for c in checkpoints["data"]] == [
        (2, {"fid": 18.0}, False),
        (4, {"fid": 16.0}, True),  # the FID evaluated at its own step
    ]
    job = client.get(f"/v1/jobs/{reported}", headers=account.headers).json()
    assert job["status"] == "succeeded" and job["summary_metrics"] == {"fid": 12.5}


def test_another_tenant_gets_404_everywhere(
    client: TestClient, other: Account, reported: str
) -> None:
    for path in (
        "",
        "/events",
        "/metrics",
        "/samples",
        "/samples/2.png",
        "/checkpoints",
        "/stream",
    ):
        assert_error(
            client.get(f"/v1/jobs/{reported}{path}", headers=other.headers), 404, "not_found"
        )
    assert_error(client.post(f"/v1/jobs/{reported}/cancel", headers=other.headers), 404)


# --- the stream --------------------------------------------------------------------------------


def parse_sse(text: str) -> list[tuple[str, str, str | None]]:
    """(event, data, id) of each message; comments and retry lines skipped."""
    messages = []
    for block in text.split("\n\n"):
        fields: dict[str, list[str]] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            key, _, value = line.partition(": ")
            fields.setdefault(key, []).append(value)
        if "event" in fields:
            messages.append(
                (fields["event"][0], "\n".join(fields["data"]), (fields.get("id") or [None])[0])
            )
    return messages


def test_stream_of_a_finished_job(client: TestClient, account: Account, reported: str) -> None:
    import json

    with client.stream("GET", f"/v1/jobs/{reported}/stream", headers=account.headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    assert text.startswith("retry: ")
    messages = parse_sse(text)
    assert [m[0] for m in messages] == ["event"] * 4 + ["progress", "metrics", "status"]
    assert [m[2] for m in messages[:4]] == ["1", "2", "3", "4"]
    assert json.loads(messages[2][1])["code"] == "mode_collapse"
    assert json.loads(messages[4][1])["step"] == 4
    assert json.loads(messages[5][1])["fid"] == {"step": 4, "value": 12.5}
    assert json.loads(messages[6][1])["status"] == "succeeded"
    resumed = client.get(
        f"/v1/jobs/{reported}/stream", headers=account.headers | {"Last-Event-ID": "3"}
    )
    assert [m[2] for m in parse_sse(resumed.text) if m[0] == "event"] == ["4"]


def test_stream_follows_a_job_until_it_finishes(
    client: TestClient, account: Account, sessions: sessionmaker[Session]
) -> None:
    import json

    job_id = submit(client, account).json()["id"]
    run_as_worker(sessions, job_id)

    def train() -> None:
        for step in (1, 2, 3, 4):
            time.sleep(0.15)
            with session_scope(sessions) as session:
                store_jobs.heartbeat(
                    session,
                    job_id=job_id,
                    worker_id="w1",
                    lease_s=60,
                    step=step,
                    images_per_s=100.0,
                )
                store_jobs.record_metrics(
                    session, job_id=job_id, step=step, metrics={"d_loss": step}
                )
        with session_scope(sessions) as session:
            store_jobs.finish_job(
                session, job_id=job_id, worker_id="w1", status="succeeded", step=4
            )

    worker = threading.Thread(target=train)
    worker.start()
    started = time.monotonic()
    text = client.get(f"/v1/jobs/{job_id}/stream", headers=account.headers).text
    worker.join()
    assert time.monotonic() - started < 10
    messages = parse_sse(text)
    statuses = [json.loads(d)["status"] for e, d, _ in messages if e == "status"]
    assert statuses[0] == "running" and statuses[-1] == "succeeded"
    steps = [json.loads(d)["step"] for e, d, _ in messages if e == "progress"]
    assert (
        steps == sorted(steps) and steps[-1] == 4 and len(steps) >= 2
    )  # seen live, not only at the end
    events = [json.loads(d)["message"] for e, d, _ in messages if e == "event"]
    assert events[-1] == "running → succeeded"
    assert messages[-1][0] == "status"


def test_stream_sends_keepalive_comments(
    tmp_path: Any, pg_url: str, account: Account, sessions: sessionmaker[Session]
) -> None:
    from api.main import create_app
    from tests.api.conftest import make_settings

    app = create_app(make_settings(tmp_path, pg_url, stream_keepalive_s=0.1, stream_poll_s=0.05))
    with TestClient(app) as client:
        job_id = submit(client, account).json()["id"]

        def finish_later() -> None:
            time.sleep(0.5)
            with session_scope(sessions) as session:
                store_jobs.request_cancel(session, job_id=job_id, tenant_id=account.tenant_id)

        thread = threading.Thread(target=finish_later)
        thread.start()
        text = client.get(f"/v1/jobs/{job_id}/stream", headers=account.headers).text
        thread.join()
    assert ": keep-alive" in text
    assert parse_sse(text)[-1][0] == "status" and '"cancelled"' in parse_sse(text)[-1][1]


# --- the reaper --------------------------------------------------------------------------------


def test_reaper_requeues_lost_jobs(
    client: TestClient,
    account: Account,
    app: FastAPI,
    sessions: sessionmaker[Session],
    settings: ApiSettings,
) -> None:
    lost_message = submit(client, account).json()["id"]
    lost_worker = submit(client, account).json()["id"]
    run_as_worker(sessions, lost_worker)
    long_ago = utcnow() - timedelta(hours=2)
    with session_scope(sessions) as session:
        session.execute(update(Job).where(Job.id == lost_message).values(enqueued_at=long_ago))
        session.execute(update(Job).where(Job.id == lost_worker).values(lease_expires_at=long_ago))
    before = len(queued_messages(settings))
    enqueued = reap_once(
        sessions=sessions,
        celery=app.state.celery,
        requeue_queued_after_s=settings.requeue_queued_after_s,
        max_attempts=settings.max_attempts,
    )
    assert {lost_message, lost_worker} <= set(enqueued)
    assert len(queued_messages(settings)) >= before + 2
    body = client.get(f"/v1/jobs/{lost_worker}", headers=account.headers).json()
    assert body["status"] == "interrupted"


def test_reaper_loop_runs_in_the_lifespan(
    tmp_path: Any, pg_url: str, account: Account, sessions: sessionmaker[Session]
) -> None:
    from api.main import create_app
    from tests.api.conftest import make_settings

    settings = make_settings(tmp_path, pg_url, reaper_enabled=True, reap_interval_s=0.05)
    with TestClient(create_app(settings)) as client:
        job_id = submit(client, account).json()["id"]
        run_as_worker(sessions, job_id)
        with session_scope(sessions) as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(lease_expires_at=utcnow() - timedelta(hours=1))
            )
        deadline = time.monotonic() + 10
        while (
            client.get(f"/v1/jobs/{job_id}", headers=account.headers).json()["status"]
            != "interrupted"
        ):
            assert time.monotonic() < deadline, "the reaper loop did not run"
            time.sleep(0.05)
