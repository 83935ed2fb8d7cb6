from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

import store.jobs
from gan_engine.spec import Spec, parse_spec
from store.auth import create_tenant
from store.db import rowcount, session_scope
from store.errors import Conflict, LimitExceeded, NotFound
from store.jobs import (
    best_checkpoint_step,
    claim_job,
    create_job,
    finish_job,
    get_job,
    heartbeat,
    latest_checkpoint,
    prune_checkpoints,
    reap,
    record_checkpoint,
    record_event,
    record_metrics,
    record_sample,
    request_cancel,
    request_pause,
    resume_job,
    succeed_job,
)
from store.models import (
    FINISHED_STATUSES,
    Checkpoint,
    Job,
    JobEvent,
    JobStatus,
    Metric,
    Sample,
    TrainedModel,
    new_id,
    utcnow,
)
from store.storage import checkpoint_key, sample_key

Factory = sessionmaker[Session]


def spec(steps: int = 100, dataset: dict[str, Any] | None = None, **training: Any) -> Spec:
    return parse_spec(
        {
            "dataset": dataset or {"builtin": "ring8"},
            "model": {"architecture": "mlp", "image_size": 8},
            "training": {"steps": steps, "batch_size": 64, **training},
        }
    )


def new_tenant(db: Factory, name: str = "acme") -> str:
    with session_scope(db) as session:
        return create_tenant(session, name=name).id


def new_job(db: Factory, tenant_id: str, **kwargs: Any) -> str:
    with session_scope(db) as session:
        job, created = create_job(
            session, tenant_id=tenant_id, spec=kwargs.pop("spec", spec()), **kwargs
        )
        assert created
        return job.id


def claimed_job(db: Factory, tenant_id: str, worker_id: str = "w1", lease_s: float = 60) -> str:
    job_id = new_job(db, tenant_id)
    with session_scope(db) as session:
        assert claim_job(session, job_id=job_id, worker_id=worker_id, lease_s=lease_s) is not None
    return job_id


def events(db: Factory, job_id: str) -> list[tuple[int, str, str, str]]:
    with session_scope(db) as session:
        rows = session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
        )
        return [(e.seq, e.level, e.code, e.message) for e in rows]


def job(db: Factory, job_id: str) -> Job:
    with session_scope(db) as session:
        return get_job(session, job_id=job_id)


# --- create ------------------------------------------------------------------------------------


def test_create_job_records_a_queued_job(db: Factory) -> None:
    tenant = new_tenant(db)
    job_id = new_job(db, tenant, spec=spec(250, dataset={"id": "ds_abc"}))
    created = job(db, job_id)
    assert job_id.startswith("job_") and len(job_id) > 12
    assert (created.status, created.step, created.total_steps, created.attempt) == (
        "queued",
        0,
        250,
        0,
    )
    assert created.dataset_id == "ds_abc"
    assert created.created_at.utcoffset() == timedelta(0)
    assert events(db, job_id) == [(1, "info", "status", "created → queued")]


def test_idempotency_key(db: Factory) -> None:
    tenant, other = new_tenant(db), new_tenant(db, "other")
    normalised = parse_spec({"preset": "wgan-gp", "dataset": {"builtin": "mnist"}})
    with session_scope(db) as session:
        first, created = create_job(
            session, tenant_id=tenant, spec=normalised, idempotency_key="k1"
        )
        assert created
    with session_scope(db) as session:  # same key, same spec (after a JSON round trip): same job
        again, created = create_job(
            session, tenant_id=tenant, spec=normalised, idempotency_key="k1"
        )
        assert (again.id, created) == (first.id, False)
    with pytest.raises(Conflict, match="different spec"), session_scope(db) as session:
        create_job(session, tenant_id=tenant, spec=spec(), idempotency_key="k1")
    with session_scope(db) as session:  # keys are per tenant
        theirs, created = create_job(
            session, tenant_id=other, spec=normalised, idempotency_key="k1"
        )
        assert created and theirs.id != first.id
    with session_scope(db) as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 2


def test_concurrent_requests_with_one_idempotency_key(db: Factory) -> None:
    tenant = new_tenant(db)
    results = race(
        lambda session, _: create_job(session, tenant_id=tenant, spec=spec(), idempotency_key="k"),
        db,
        4,
    )
    assert len({job.id for job, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, False, False, True]


def test_max_active_jobs(db: Factory) -> None:
    tenant = new_tenant(db)
    new_job(db, tenant, idempotency_key="a", max_active=2)
    new_job(db, tenant, max_active=2)
    with pytest.raises(LimitExceeded), session_scope(db) as session:
        create_job(session, tenant_id=tenant, spec=spec(), max_active=2)
    with session_scope(db) as session:  # a replay is not a new job
        assert (
            create_job(session, tenant_id=tenant, spec=spec(), idempotency_key="a", max_active=2)[1]
            is False
        )


# --- claim -------------------------------------------------------------------------------------


def race(work: Callable[[Session, int], Any], db: Factory, n: int = 2) -> list[Any]:
    """Run ``work(session, i)`` in n threads, each with its own session and connection, released
    together; each commits its own transaction."""
    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            with session_scope(db) as session:
                session.connection()  # check out a connection before the start line
                barrier.wait(timeout=10)
                results.append(work(session, i))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    return results


def test_claim_race_exactly_one_wins(db: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    lost_on_update: list[int] = []  # the loser read "queued" too and lost the conditional UPDATE

    def counting_rowcount(result: Any) -> int:
        count = rowcount(result)
        if count == 0:
            lost_on_update.append(1)
        return count

    monkeypatch.setattr(store.jobs, "rowcount", counting_rowcount)
    tenant = new_tenant(db)
    for round_ in range(20):
        job_id = new_job(db, tenant)

        def claim(session: Session, i: int, job_id: str = job_id) -> str | None:
            worker = f"worker-{i}"
            claimed = claim_job(session, job_id=job_id, worker_id=worker, lease_s=60)
            return worker if claimed else None

        winners = [w for w in race(claim, db) if w]
        assert len(winners) == 1, f"round {round_}: {winners}"
        final = job(db, job_id)
        assert (final.status, final.attempt, final.worker_id) == ("running", 1, winners[0])
        assert [e[3] for e in events(db, job_id)] == [
            "created → queued",
            "queued → running (attempt 1)",
        ]
    assert lost_on_update, "the threads never overlapped: the race tested nothing"


def test_claim_only_claimable_jobs(db: Factory) -> None:
    tenant = new_tenant(db)
    job_id = claimed_job(db, tenant)
    with session_scope(db) as session:
        assert claim_job(session, job_id=job_id, worker_id="w2", lease_s=60) is None  # redelivery
        assert claim_job(session, job_id="job_missing", worker_id="w2", lease_s=60) is None
        assert finish_job(session, job_id=job_id, worker_id="w1", status="succeeded")
    with session_scope(db) as session:
        assert claim_job(session, job_id=job_id, worker_id="w2", lease_s=60) is None


# --- heartbeat, finish -------------------------------------------------------------------------


def test_heartbeat_renews_the_lease_and_records_progress(db: Factory) -> None:
    job_id = claimed_job(db, new_tenant(db), lease_s=5)
    before = job(db, job_id).lease_expires_at
    with session_scope(db) as session:
        beat = heartbeat(
            session, job_id=job_id, worker_id="w1", lease_s=60, step=40, images_per_s=512.0,
            phase="evaluating", eta_s=12.5,
        )  # fmt: skip
    assert beat and beat.owned and not beat.cancel_requested
    after = job(db, job_id)
    assert after.lease_expires_at is not None and before is not None
    assert after.lease_expires_at > before + timedelta(seconds=50)
    assert (after.step, after.images_per_s, after.fraction) == (40, 512.0, 0.4)
    assert (after.phase, after.eta_s) == ("evaluating", 12.5)


def test_heartbeat_after_losing_the_lease(db: Factory) -> None:
    job_id = claimed_job(db, new_tenant(db), worker_id="old", lease_s=1)
    with session_scope(db) as session:
        assert reap(session, now=utcnow() + timedelta(seconds=5)) == [job_id]
    with session_scope(db) as session:
        beat = heartbeat(session, job_id=job_id, worker_id="old", lease_s=60, step=99)
        assert not beat and not beat.owned
    with session_scope(db) as session:
        claimed = claim_job(session, job_id=job_id, worker_id="new", lease_s=60)
        assert claimed is not None and claimed.attempt == 2
    with session_scope(db) as session:
        assert not heartbeat(session, job_id=job_id, worker_id="old", lease_s=60).owned
        assert not finish_job(session, job_id=job_id, worker_id="old", status="succeeded")
        assert (
            succeed_job(
                session,
                job_id=job_id,
                worker_id="old",
                model_id=new_id("mdl"),
                class_names=None,
                image_shape=[2],
            )
            is None
        )
        assert heartbeat(session, job_id=job_id, worker_id="new", lease_s=60).owned
    final = job(db, job_id)
    assert (final.status, final.worker_id, final.step) == ("running", "new", 0)
    assert [e[3] for e in events(db, job_id)] == [
        "created → queued",
        "queued → running (attempt 1)",
        "running → interrupted (lease expired; worker old lost)",
        "interrupted → running (attempt 2)",
    ]


def test_failed_job_keeps_its_error(db: Factory) -> None:
    job_id = claimed_job(db, new_tenant(db))
    with session_scope(db) as session:
        assert finish_job(
            session,
            job_id=job_id,
            worker_id="w1",
            status="failed",
            error_code="diverged",
            error_message="losses became NaN at step 12; lower the learning rate",
            step=12,
        )
    failed = job(db, job_id)
    assert (failed.status, failed.error_code, failed.step) == ("failed", "diverged", 12)
    assert failed.finished_at is not None and failed.lease_expires_at is None
    assert events(db, job_id)[-1][1:] == (
        "error",
        "status",
        "running → failed: diverged: losses became NaN at step 12; lower the learning rate",
    )
    with pytest.raises(ValueError), session_scope(db) as session:
        finish_job(session, job_id=job_id, worker_id="w1", status="running")


def test_succeed_job_registers_the_model(db: Factory) -> None:
    tenant = new_tenant(db)
    job_id = claimed_job(db, tenant)
    model_id = new_id("mdl")
    with session_scope(db) as session:
        model = succeed_job(
            session,
            job_id=job_id,
            worker_id="w1",
            model_id=model_id,
            class_names=["a", "b"],
            image_shape=[8, 8, 1],
            summary={"fid": 12.5},
            step=100,
        )
        assert model is not None
    with session_scope(db) as session:
        model = session.get(TrainedModel, model_id)
        assert model is not None
        assert (model.tenant_id, model.job_id, model.storage_prefix) == (
            tenant,
            job_id,
            f"models/{model_id}/",
        )
        assert model.spec == spec().to_dict() and model.class_names == ["a", "b"]
    done = job(db, job_id)
    assert (done.status, done.model_id, done.summary_metrics, done.step) == (
        "succeeded",
        model_id,
        {"fid": 12.5},
        100,
    )


# --- what a run reports ------------------------------------------------------------------------


def test_metrics_replay_inserts_no_duplicates(db: Factory) -> None:
    job_id = claimed_job(db, new_tenant(db))
    for step in (10, 20, 30):
        with session_scope(db) as session:
            record_metrics(
                session, job_id=job_id, step=step, metrics={"d_loss": step / 10, "g_loss": -step}
            )
    with session_scope(db) as session:  # a resumed run replays steps 20 and 30
        record_metrics(
            session, job_id=job_id, step=20, metrics={"d_loss": 2.5, "g_loss": float("nan")}
        )
        record_metrics(session, job_id=job_id, step=30, metrics={"d_loss": 3.5})
        record_metrics(session, job_id=job_id, step=30, metrics={})
        record_metrics(session, job_id=job_id, step=40, metrics={"fid": 30.0})
    with session_scope(db) as session:
        rows = session.execute(
            select(Metric.name, Metric.step, Metric.value)
            .where(Metric.job_id == job_id)
            .order_by(Metric.name, Metric.step)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("d_loss", 10, 1.0),
        ("d_loss", 20, 2.5),
        ("d_loss", 30, 3.5),
        ("fid", 40, 30.0),
        ("g_loss", 10, -10.0),
        ("g_loss", 20, None),
        ("g_loss", 30, -30.0),
    ]
    assert job(db, job_id).latest_metrics == {
        "d_loss": {"step": 30, "value": 3.5},
        "g_loss": {"step": 30, "value": -30.0},
        "fid": {"step": 40, "value": 30.0},
    }


def test_events_are_ordered_per_job(db: Factory) -> None:
    tenant = new_tenant(db)
    first, second = new_job(db, tenant), new_job(db, tenant)
    with session_scope(db) as session:
        record_event(
            session, job_id=first, step=5, level="warning", code="mode_collapse", message="D wins"
        )
        record_event(session, job_id=second, code="note", message="hello")
        record_event(session, job_id=first, step=6, code="note", message="ok")
        with pytest.raises(ValueError):
            record_event(session, job_id=first, level="debug", code="x", message="y")
        with pytest.raises(NotFound):
            record_event(session, job_id="job_missing", code="x", message="y")
    assert [e[:3] for e in events(db, first)] == [
        (1, "info", "status"),
        (2, "warning", "mode_collapse"),
        (3, "info", "note"),
    ]
    assert [e[0] for e in events(db, second)] == [1, 2]


def test_samples_and_checkpoints_are_idempotent_per_step(db: Factory) -> None:
    job_id = claimed_job(db, new_tenant(db))
    with session_scope(db) as session:
        assert latest_checkpoint(session, job_id=job_id) is None
        for step in (500, 1000):
            record_sample(session, job_id=job_id, step=step, storage_key=sample_key(job_id, step))
            record_checkpoint(
                session,
                job_id=job_id,
                step=step,
                storage_key=checkpoint_key(job_id, step),
                metrics={"fid": 50.0 - step / 100},
            )
        record_sample(session, job_id=job_id, step=1000, storage_key=sample_key(job_id, 1000))
        record_checkpoint(
            session,
            job_id=job_id,
            step=1000,
            storage_key="elsewhere",
            metrics={"fid": float("inf")},
        )
    with session_scope(db) as session:
        assert (
            session.scalar(select(func.count()).select_from(Sample).where(Sample.job_id == job_id))
            == 2
        )
        newest = latest_checkpoint(session, job_id=job_id)
        assert newest is not None
        assert (newest.step, newest.storage_key, newest.metrics) == (
            1000,
            "elsewhere",
            {"fid": None},
        )


# --- cancel ------------------------------------------------------------------------------------


def test_cancel_a_queued_job(db: Factory) -> None:
    tenant = new_tenant(db)
    job_id = new_job(db, tenant)
    with session_scope(db) as session:
        cancelled = request_cancel(session, job_id=job_id, tenant_id=tenant)
        assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    with session_scope(db) as session:
        assert claim_job(session, job_id=job_id, worker_id="w", lease_s=60) is None
    assert events(db, job_id)[-1][3] == "queued → cancelled"


def test_cancel_a_running_job(db: Factory) -> None:
    tenant = new_tenant(db)
    job_id = claimed_job(db, tenant)
    with session_scope(db) as session:
        flagged = request_cancel(session, job_id=job_id, tenant_id=tenant)
        assert (flagged.status, flagged.cancel_requested) == ("running", True)
    with session_scope(db) as session:  # asking twice changes nothing
        assert request_cancel(session, job_id=job_id, tenant_id=tenant).status == "running"
    with session_scope(db) as session:
        beat = heartbeat(session, job_id=job_id, worker_id="w1", lease_s=60, step=7)
        assert beat.owned and beat.cancel_requested and not beat
        assert finish_job(session, job_id=job_id, worker_id="w1", status="cancelled", step=7)
    assert job(db, job_id).status == "cancelled"
    assert [e[2:] for e in events(db, job_id)][-2:] == [
        ("cancel_requested", "cancel requested; the worker stops at its next heartbeat"),
        ("status", "running → cancelled"),
    ]


def test_pause_a_queued_job_then_resume_it(db: Factory) -> None:
    tenant = new_tenant(db)
    job_id = new_job(db, tenant)
    with session_scope(db) as session:
        assert request_pause(session, job_id=job_id, tenant_id=tenant).status == "paused"
    with session_scope(db) as session:  # twice: nothing more; no worker takes it
        assert request_pause(session, job_id=job_id, tenant_id=tenant).status == "paused"
        assert claim_job(session, job_id=job_id, worker_id="w", lease_s=60) is None
    with session_scope(db) as session:
        resumed, enqueue = resume_job(session, job_id=job_id, tenant_id=tenant, max_active=4)
        assert (resumed.status, enqueue) == ("queued", True)
    with session_scope(db) as session:  # resuming a queued job changes nothing
        assert resume_job(session, job_id=job_id, tenant_id=tenant)[1] is False
        assert claim_job(session, job_id=job_id, worker_id="w", lease_s=60) is not None
    messages = [e[3] for e in events(db, job_id) if e[2] == "status"]
    assert messages == ["created → queued", "queued → paused", "paused → queued",
                        "queued → running (attempt 1)"]  # fmt: skip


def test_pause_a_running_job_its_worker_stops_it_paused(db: Factory) -> None:
    tenant = new_tenant(db)
    job_id = claimed_job(db, tenant)
    with session_scope(db) as session:
        flagged = request_pause(session, job_id=job_id, tenant_id=tenant)
        assert (flagged.status, flagged.pause_requested) == ("running", True)
        beat = heartbeat(session, job_id=job_id, worker_id="w1", lease_s=60, step=7)
        assert beat.owned and beat.pause_requested and not beat.cancel_requested and not beat
        assert finish_job(session, job_id=job_id, worker_id="w1", status="paused", step=7)
    paused = job(db, job_id)
    assert (paused.status, paused.lease_expires_at, paused.finished_at) == ("paused", None, None)
    with session_scope(db) as session:
        assert resume_job(session, job_id=job_id, tenant_id=tenant)[0].pause_requested is False


def test_resuming_before_the_pause_takes_effect_withdraws_it(db: Factory) -> None:
    tenant = new_tenant(db)
    job_id = claimed_job(db, tenant)
    with session_scope(db) as session:
        request_pause(session, job_id=job_id, tenant_id=tenant)
        resumed, enqueue = resume_job(session, job_id=job_id, tenant_id=tenant)
        assert (resumed.status, resumed.pause_requested, enqueue) == ("running", False, False)
        assert heartbeat(session, job_id=job_id, worker_id="w1", lease_s=60)
    assert [e[2] for e in events(db, job_id)][-2:] == ["pause_requested", "pause_withdrawn"]


def test_a_paused_job_counts_against_no_limit_until_resumed(db: Factory) -> None:
    tenant = new_tenant(db)
    paused = new_job(db, tenant)
    with session_scope(db) as session:
        request_pause(session, job_id=paused, tenant_id=tenant)
    new_job(db, tenant, max_active=1)  # the paused one does not count
    with pytest.raises(LimitExceeded), session_scope(db) as session:
        resume_job(session, job_id=paused, tenant_id=tenant, max_active=1)
    assert job(db, paused).status == "paused"


def test_a_lost_worker_leaves_a_pausing_job_paused_and_a_paused_job_can_be_cancelled(
    db: Factory,
) -> None:
    tenant = new_tenant(db)
    job_id = claimed_job(db, tenant, lease_s=1)
    with session_scope(db) as session:
        request_pause(session, job_id=job_id, tenant_id=tenant)
    with session_scope(db) as session:
        assert reap(session, now=utcnow() + timedelta(seconds=5)) == []  # nothing to enqueue
    assert job(db, job_id).status == "paused"
    with session_scope(db) as session:
        assert request_cancel(session, job_id=job_id, tenant_id=tenant).status == "cancelled"
    for ask in (request_pause, resume_job):
        with pytest.raises(Conflict, match="already cancelled"), session_scope(db) as session:
            ask(session, job_id=job_id, tenant_id=tenant)


def test_cancel_a_finished_or_foreign_job(db: Factory) -> None:
    tenant, other = new_tenant(db), new_tenant(db, "other")
    job_id = claimed_job(db, tenant)
    with session_scope(db) as session:
        finish_job(session, job_id=job_id, worker_id="w1", status="succeeded")
    with pytest.raises(Conflict, match="already succeeded"), session_scope(db) as session:
        request_cancel(session, job_id=job_id, tenant_id=tenant)
    with pytest.raises(NotFound), session_scope(db) as session:
        request_cancel(session, job_id=job_id, tenant_id=other)


# --- reaper ------------------------------------------------------------------------------------


def test_reap(db: Factory) -> None:
    tenant = new_tenant(db)
    expired = claimed_job(db, tenant, worker_id="lost", lease_s=1)
    healthy = claimed_job(db, tenant, worker_id="alive", lease_s=3600)
    doomed = claimed_job(db, tenant, worker_id="lost2", lease_s=1)
    fresh_queued = new_job(db, tenant)
    stale_queued = new_job(db, tenant)
    with session_scope(db) as session:
        request_cancel(session, job_id=doomed, tenant_id=tenant)
        old = utcnow() - timedelta(hours=1)
        session.execute(
            update(Job).where(Job.id == stale_queued).values(enqueued_at=old, created_at=old)
        )

    now = utcnow() + timedelta(seconds=5)
    with session_scope(db) as session:
        ids = reap(session, now=now, requeue_queued_older_than_s=600)
    assert sorted(ids) == sorted([expired, stale_queued])
    statuses = {
        i: job(db, i).status for i in (expired, healthy, doomed, fresh_queued, stale_queued)
    }
    assert statuses == {
        expired: "interrupted",
        healthy: "running",
        doomed: "cancelled",
        fresh_queued: "queued",
        stale_queued: "queued",
    }
    assert events(db, expired)[-1][1:] == (
        "warning",
        "status",
        "running → interrupted (lease expired; worker lost lost)",
    )
    assert events(db, doomed)[-1][3] == "running → cancelled (lease expired; worker lost2 lost)"

    with session_scope(db) as session:  # re-enqueued just now: not again until the threshold passes
        assert reap(session, now=now, requeue_queued_older_than_s=600) == []
    with session_scope(db) as session:
        later = reap(session, now=now + timedelta(seconds=601), requeue_queued_older_than_s=600)
    assert sorted(later) == sorted([expired, fresh_queued, stale_queued])


def test_a_cancel_wins_over_a_spent_retry_budget(db: Factory) -> None:
    tenant = new_tenant(db)
    job_id = claimed_job(db, tenant, worker_id="lost", lease_s=1)
    with session_scope(db) as session:
        request_cancel(session, job_id=job_id, tenant_id=tenant)
    with session_scope(db) as session:
        assert reap(session, now=utcnow() + timedelta(seconds=5), max_attempts=1) == []
    cancelled = job(db, job_id)
    assert (cancelled.status, cancelled.workers_lost, cancelled.error_code) == (
        "cancelled",
        1,
        None,
    )


# --- the transition table ----------------------------------------------------------------------


def test_the_transition_table_reaches_every_status_and_leaves_no_finished_one() -> None:
    table = [
        value for value in vars(store.jobs).values() if isinstance(value, store.jobs.Transition)
    ]
    assert {t.target for t in table} == set(JobStatus)  # queued: created so, or resumed
    assert not {s for t in table for s in t.sources} & set(FINISHED_STATUSES)
    assert {t.stamp for t in table} == {"started_at", "finished_at", "enqueued_at", "updated_at"}
    assert {t.stamp for t in table if t.target == JobStatus.PAUSED} == {"updated_at"}
    assert all(t.level != "error" for t in table if t.target != JobStatus.FAILED)
    assert all(t.stamp == "finished_at" for t in table if t.target in FINISHED_STATUSES)


def test_a_transition_from_a_status_it_does_not_leave_is_refused(db: Factory) -> None:
    job_id = new_job(db, new_tenant(db))
    with pytest.raises(ValueError, match="no transition"), session_scope(db) as session:
        store.jobs._transition(session, store.jobs.SUCCEED, job_id=job_id, current="queued")


# --- the retry budget (MAX_ATTEMPTS) -----------------------------------------------------------


def lose_worker(db: Factory, job_id: str, worker_id: str, max_attempts: int) -> list[str]:
    """Claim with a lease already expired, then let the reaper find it."""
    with session_scope(db) as session:
        claimed = claim_job(
            session, job_id=job_id, worker_id=worker_id, lease_s=-1, max_attempts=max_attempts
        )
        assert claimed is not None
    with session_scope(db) as session:
        return reap(session, max_attempts=max_attempts)


def test_a_job_whose_worker_is_lost_max_attempts_times_fails_with_worker_lost(
    db: Factory,
) -> None:
    job_id = new_job(db, new_tenant(db))
    assert lose_worker(db, job_id, "w1", max_attempts=3) == [job_id]
    assert lose_worker(db, job_id, "w2", max_attempts=3) == [job_id]
    assert (job(db, job_id).status, job(db, job_id).workers_lost) == ("interrupted", 2)

    assert lose_worker(db, job_id, "w3", max_attempts=3) == []  # not re-enqueued: it failed

    failed = job(db, job_id)
    assert (failed.status, failed.error_code, failed.attempt, failed.workers_lost) == (
        "failed",
        "worker_lost",
        3,
        3,
    )
    assert failed.finished_at is not None and failed.lease_expires_at is None
    assert "lost on 3 attempts (the last was attempt 3)" in (failed.error_message or "")
    assert "MAX_ATTEMPTS is 3" in (failed.error_message or "")
    last = events(db, job_id)[-1]
    assert last[1:3] == ("error", "status")
    assert last[3].startswith("running → failed (lease expired; worker w3 lost): worker_lost: ")
    with session_scope(db) as session:  # a late redelivery trains nothing
        assert claim_job(session, job_id=job_id, worker_id="w4", lease_s=60) is None


def test_a_graceful_hand_back_is_not_an_error_and_spends_no_attempt(db: Factory) -> None:
    job_id = new_job(db, new_tenant(db))
    for attempt in range(1, 5):
        with session_scope(db) as session:
            worker = f"w{attempt}"
            assert claim_job(session, job_id=job_id, worker_id=worker, lease_s=60, max_attempts=1)
            assert finish_job(
                session,
                job_id=job_id,
                worker_id=worker,
                status="interrupted",
                note=f"worker shut down at step {attempt * 10}; the job resumes there",
                step=attempt * 10,
            )
    handed_back = job(db, job_id)
    assert (handed_back.status, handed_back.attempt, handed_back.workers_lost) == (
        "interrupted",
        4,
        0,
    )
    assert handed_back.error_code is None and handed_back.error_message is None
    assert events(db, job_id)[-1][1:] == (
        "info",
        "status",
        "running → interrupted: worker shut down at step 40; the job resumes there",
    )
    with pytest.raises(ValueError, match="has no error"), session_scope(db) as session:
        claim_job(session, job_id=job_id, worker_id="w5", lease_s=60)
        finish_job(session, job_id=job_id, worker_id="w5", status="interrupted", error_message="no")


def test_claim_refuses_a_job_lost_under_a_larger_budget(db: Factory) -> None:
    job_id = new_job(db, new_tenant(db))
    for worker in ("w1", "w2"):
        assert lose_worker(db, job_id, worker, max_attempts=5) == [job_id]

    with session_scope(db) as session:
        assert claim_job(session, job_id=job_id, worker_id="w3", lease_s=60, max_attempts=2) is None

    refused = job(db, job_id)
    assert (refused.status, refused.error_code, refused.attempt) == ("failed", "worker_lost", 2)
    assert "lost on 2 attempts already and MAX_ATTEMPTS is 2" in (refused.error_message or "")
    assert events(db, job_id)[-1][3].startswith("interrupted → failed: worker_lost: ")


def test_claim_takes_over_an_expired_lease_that_no_reaper_saw(db: Factory) -> None:
    job_id = new_job(db, new_tenant(db))
    with session_scope(db) as session:
        assert claim_job(session, job_id=job_id, worker_id="gone", lease_s=-1)
    with session_scope(db) as session:
        claimed = claim_job(session, job_id=job_id, worker_id="new", lease_s=60)
        assert claimed is not None
    taken = job(db, job_id)
    assert (taken.status, taken.worker_id, taken.attempt, taken.workers_lost) == (
        "running",
        "new",
        2,
        1,
    )
    assert [e[3] for e in events(db, job_id)][-2:] == [
        "running → interrupted (lease expired; worker gone lost)",
        "interrupted → running (attempt 2)",
    ]
    with session_scope(db) as session:  # a live lease is never taken
        assert claim_job(session, job_id=job_id, worker_id="third", lease_s=60) is None


def test_max_active_holds_under_concurrent_submissions(
    pg_sessionmaker: Factory,
) -> None:
    db = pg_sessionmaker  # SQLite serialises writers itself; the row lock is PostgreSQL's part
    tenant = new_tenant(db)

    def submit(session: Session, i: int) -> str:
        try:
            created, _ = create_job(session, tenant_id=tenant, spec=spec(), max_active=3)
            return created.id
        except LimitExceeded:
            return "429"

    results = race(submit, db, 8)
    assert sorted(results).count("429") == 5
    with session_scope(db) as session:
        assert store.jobs.count_active_jobs(session, tenant_id=tenant) == 3


def test_the_store_and_the_engine_share_one_event_vocabulary() -> None:
    from typing import get_args

    from gan_engine.events import Level
    from store.models import EventLevel

    assert tuple(EventLevel) == get_args(Level)


# --- checkpoint retention ----------------------------------------------------------------------


def _checkpoints(db: Factory, job_id: str, fids: dict[int, float]) -> None:
    """Checkpoints at steps 10..60; an FID evaluated at the steps in ``fids``, and one at step 35
    that no checkpoint holds."""
    with session_scope(db) as session:
        for step in range(10, 61, 10):
            record_checkpoint(session, job_id=job_id, step=step, storage_key=f"c{step}")
        for step, fid in {**fids, 35: 0.5}.items():
            record_metrics(session, job_id=job_id, step=step, metrics={"fid": fid})


def _kept(db: Factory, job_id: str) -> list[int]:
    with session_scope(db) as session:
        return list(
            session.scalars(
                select(Checkpoint.step).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step)
            )
        )


def test_pruning_keeps_the_newest_and_the_best_evaluated_checkpoint(db: Factory) -> None:
    job_id = claimed_job(db, new_tenant(db))
    _checkpoints(db, job_id, {20: 9.0, 30: 4.0, 50: 7.0})

    with session_scope(db) as session:
        deleted = prune_checkpoints(session, job_id=job_id, keep_newest=2, best_by=["fid"])

    assert sorted(deleted) == ["c10", "c20", "c40"]
    assert _kept(db, job_id) == [30, 50, 60]  # 30: lowest FID at a checkpoint's own step
    with session_scope(db) as session:  # pruning again changes nothing
        assert prune_checkpoints(session, job_id=job_id, keep_newest=2, best_by=["fid"]) == []


def test_the_best_checkpoint_is_chosen_by_the_first_metric_the_job_has(db: Factory) -> None:
    job_id = claimed_job(db, new_tenant(db))
    _checkpoints(db, job_id, {})
    with session_scope(db) as session:
        record_metrics(session, job_id=job_id, step=20, metrics={"reverse_kl": 0.1})
        record_metrics(session, job_id=job_id, step=40, metrics={"reverse_kl": float("nan")})
        assert best_checkpoint_step(session, job_id=job_id, best_by=["fid", "reverse_kl"]) == 20
        assert best_checkpoint_step(session, job_id=job_id, best_by=["precision"]) is None
        deleted = prune_checkpoints(session, job_id=job_id, keep_newest=1, best_by=["fid"])
    assert len(deleted) == 5 and _kept(db, job_id) == [60]  # no FID at any checkpoint
    with session_scope(db) as session, pytest.raises(ValueError, match="at least 1"):
        prune_checkpoints(session, job_id=job_id, keep_newest=0, best_by=["fid"])
