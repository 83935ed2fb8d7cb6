"""A job with training.devices 2 through the worker: 2 gloo ranks under torchrun, rank 0
reporting into the store as the runner does in-process."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from sqlalchemy import update

from store.db import session_scope
from store.jobs import request_cancel, request_pause, resume_job
from store.models import Checkpoint, Job, TrainedModel
from store.storage import model_weights_key
from tests.worker.conftest import Service, poll, tiny_spec
from tests.worker.test_runner import events, first_metric_written, run, steps_of
from worker.outcome import LEASE_LOST, Outcome


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


@pytest.fixture(autouse=True)
def ranks_import_this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))


def test_a_two_rank_job_handed_back_at_shutdown_resumes_and_succeeds(
    embedded: Service, background: ThreadPoolExecutor
) -> None:
    spec = tiny_spec(steps=400, training={"devices": 2}, monitor={"checkpoint_every": 1000})
    job_id = embedded.submit(spec)
    shutdown, requeued = threading.Event(), []
    result: Future[Outcome] = background.submit(
        run, embedded, job_id, shutdown=shutdown, requeue=requeued.append
    )
    poll(lambda: first_metric_written(embedded, job_id), timeout=60, what="the first metrics")
    shutdown.set()  # what the worker's SIGTERM handler does: relayed to rank 0

    assert result.result(timeout=60).status == "interrupted" and requeued == [job_id]
    [checkpoint] = embedded.rows(Checkpoint, job_id)
    stopped_at = checkpoint.step
    assert embedded.job(job_id).step == stopped_at and 0 < stopped_at < 400

    assert run(embedded, job_id, worker_id="w2").status == "succeeded"

    job = embedded.job(job_id)
    assert (job.status, job.attempt, job.step, job.error_code) == ("succeeded", 2, 400, None)
    resumed = [e.message for e in events(embedded, job_id) if e.code == "resumed"]
    assert resumed == [f"resumed from step {stopped_at}"]
    assert steps_of(embedded, job_id) == list(range(5, 401, 5))  # rank 0 alone wrote them
    [model] = embedded.rows(TrainedModel, job_id)
    assert model.id == job.model_id and embedded.storage.exists(model_weights_key(model.id))
    assert {"modes_captured", "reverse_kl"} <= set(job.summary_metrics or {})


def test_a_cancel_stops_every_rank(embedded: Service, background: ThreadPoolExecutor) -> None:
    spec = tiny_spec(steps=1_000_000, training={"devices": 2}, monitor={"checkpoint_every": 1000})
    job_id = embedded.submit(spec)
    result: Future[Outcome] = background.submit(run, embedded, job_id)
    poll(lambda: first_metric_written(embedded, job_id), timeout=60, what="the first metrics")

    with session_scope(embedded.sessions) as session:
        request_cancel(session, job_id=job_id, tenant_id=embedded.tenant_id)

    # run_job returns only once torchrun and both ranks have exited
    assert result.result(timeout=60).status == "cancelled"
    job = embedded.job(job_id)
    assert job.status == "cancelled" and 0 < job.step < 1_000_000


def test_max_runtime_decided_on_rank_0_stops_both_ranks(embedded: Service) -> None:
    spec = tiny_spec(steps=100_000, training={"devices": 2, "max_runtime_s": 0.001})
    job_id = embedded.submit(spec)

    assert run(embedded, job_id).status == "failed"

    job = embedded.job(job_id)
    assert (job.error_code, job.step) == ("max_runtime_exceeded", 1)


def test_a_lost_lease_stops_both_ranks_without_writing(
    embedded: Service, background: ThreadPoolExecutor
) -> None:
    spec = tiny_spec(steps=1_000_000, training={"devices": 2}, monitor={"checkpoint_every": 1000})
    job_id = embedded.submit(spec)
    result: Future[Outcome] = background.submit(run, embedded, job_id)
    poll(lambda: first_metric_written(embedded, job_id), timeout=60, what="the first metrics")

    with session_scope(embedded.sessions) as session:  # the reaper gave the job to someone else
        session.execute(update(Job).where(Job.id == job_id).values(worker_id="new-owner"))

    assert result.result(timeout=60).status == LEASE_LOST  # torchrun and both ranks have exited
    job = embedded.job(job_id)
    assert (job.status, job.worker_id, job.model_id) == ("running", "new-owner", None)


def test_a_paused_two_rank_job_resumes_on_two_ranks(
    embedded: Service, background: ThreadPoolExecutor
) -> None:
    spec = tiny_spec(steps=400, training={"devices": 2}, monitor={"checkpoint_every": 1000})
    job_id = embedded.submit(spec)
    requeued: list[str] = []
    result: Future[Outcome] = background.submit(run, embedded, job_id, requeue=requeued.append)
    poll(lambda: first_metric_written(embedded, job_id), timeout=60, what="the first metrics")
    with session_scope(embedded.sessions) as session:
        request_pause(session, job_id=job_id, tenant_id=embedded.tenant_id)

    assert result.result(timeout=60).status == "paused" and requeued == []
    [checkpoint] = embedded.rows(Checkpoint, job_id)
    stopped_at = checkpoint.step
    assert embedded.job(job_id).step == stopped_at and 0 < stopped_at < 400
    with session_scope(embedded.sessions) as session:
        assert resume_job(session, job_id=job_id, tenant_id=embedded.tenant_id)[1]

    assert run(embedded, job_id).status == "succeeded"
    resumed = [e.message for e in events(embedded, job_id) if e.code == "resumed"]
    assert resumed == [f"resumed from step {stopped_at}"]
    assert embedded.job(job_id).step == 400
