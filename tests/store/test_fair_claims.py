"""Routing (a job's queue from its spec, a worker's queues from its GPUs) and the fair claim
(``store.jobs.claim_next``: a message claims the fairest waiting job of its queue)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from store.db import session_scope
from store.jobs import claim_next, fairest_job, finish_job, get_job
from store.models import Job
from store.queue import CPU_QUEUE, TRAIN_QUEUE, train_queue, worker_queues
from tests.store.test_jobs import Factory, new_job, new_tenant, race, spec

# --- routing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("training", "queue"),
    [
        ({}, "train"),
        ({"device": "auto"}, "train"),
        ({"device": "cpu"}, "train.cpu"),
        ({"device": "cpu", "devices": 4}, "train.cpu"),
        ({"device": "cuda"}, "train.gpu.1"),
        ({"device": "cuda", "devices": 8}, "train.gpu.8"),
        ({"device": "auto", "devices": 2}, "train.gpu.2"),
    ],
)
def test_a_jobs_queue_follows_its_device_and_device_count(
    db: Factory, training: dict[str, Any], queue: str
) -> None:
    resolved = spec(**training)
    assert train_queue(resolved.to_dict()) == queue
    job_id = new_job(db, new_tenant(db), spec=resolved)
    with session_scope(db) as session:
        assert get_job(session, job_id=job_id).queue == queue


def test_only_capable_workers_consume_a_queue() -> None:
    assert worker_queues(0) == [TRAIN_QUEUE, CPU_QUEUE]
    assert worker_queues(4) == [TRAIN_QUEUE, "train.gpu.4", CPU_QUEUE]
    assert worker_queues(4, cpu_jobs=False) == [TRAIN_QUEUE, "train.gpu.4"]
    for devices in (1, 2, 8):
        queue = train_queue({"training": {"device": "cuda", "devices": devices}})
        consumers = [gpus for gpus in range(9) if queue in worker_queues(gpus)]
        assert consumers == [devices]  # a pool of exactly that many GPUs a worker
    for device in ("cpu", "auto"):
        queue = train_queue({"training": {"device": device}})
        assert all(queue in worker_queues(gpus) for gpus in range(9))  # any worker


# --- the fair claim ----------------------------------------------------------------------------


def claim(db: Factory, queue: str = CPU_QUEUE, worker: str = "w") -> str | None:
    with session_scope(db) as session:
        job = claim_next(session, queue=queue, worker_id=worker, lease_s=60)
        return None if job is None else job.id


def finish(db: Factory, job_id: str, worker: str = "w") -> None:
    with session_scope(db) as session:
        assert finish_job(session, job_id=job_id, worker_id=worker, status="succeeded")


def cpu_jobs(db: Factory, tenant: str, n: int) -> list[str]:
    return [new_job(db, tenant, spec=spec(device="cpu")) for _ in range(n)]


def test_a_burst_of_one_tenant_takes_turns_with_the_others(db: Factory) -> None:
    """Tenant a queues 5 jobs before b's 2 and c's 1; eight claims (nothing finishes) serve them
    a, b, c, then round again by fewest running and least recently served."""
    a, b, c = (new_tenant(db, name) for name in "abc")
    jobs = {a: cpu_jobs(db, a, 5), b: cpu_jobs(db, b, 2), c: cpu_jobs(db, c, 1)}
    tenant_of = {job_id: tenant for tenant, ids in jobs.items() for job_id in ids}

    claimed = [claim(db) for _ in range(8)]

    assert [tenant_of[job_id] for job_id in claimed if job_id] == [a, b, c, a, b, a, a, a]
    assert [job_id for job_id in claimed if tenant_of.get(job_id or "") == a] == jobs[a]
    assert claim(db) is None  # nothing waits


def test_the_tenant_with_fewer_running_jobs_goes_first(db: Factory) -> None:
    """b runs two jobs and a one, so a's newer job goes before b's older one; once b's finish,
    b is the one with fewer running."""
    a, b = new_tenant(db, "a"), new_tenant(db, "b")
    b1, b2 = cpu_jobs(db, b, 2)
    assert [claim(db), claim(db)] == [b1, b2]
    (a1,) = cpu_jobs(db, a, 1)
    assert claim(db) == a1
    (b3,) = cpu_jobs(db, b, 1)
    (a2,) = cpu_jobs(db, a, 1)
    assert claim(db) == a2  # a: 1 running, b: 2
    finish(db, b1)
    finish(db, b2)
    cpu_jobs(db, a, 1)
    assert claim(db) == b3  # now b runs none and a two


def test_a_claim_takes_only_claimable_jobs_of_its_own_queue(db: Factory) -> None:
    tenant = new_tenant(db)
    gpu = new_job(db, tenant, spec=spec(device="cuda"))
    cancelled, paused, spent, ready = cpu_jobs(db, tenant, 4)
    with session_scope(db) as session:
        session.execute(update(Job).where(Job.id == cancelled).values(cancel_requested=True))
        session.execute(update(Job).where(Job.id == paused).values(status="paused"))
        session.execute(
            update(Job).where(Job.id == spent).values(status="interrupted", workers_lost=3)
        )

    assert claim(db) == ready  # the spent job is failed on the way, as claim_job fails it
    assert claim(db) is None
    with session_scope(db) as session:
        assert get_job(session, job_id=spent).error_code == "worker_lost"
        assert fairest_job(session, queue="train.gpu.1") == gpu
    assert claim(db, queue="train.gpu.1") == gpu


def test_racing_workers_claim_different_jobs(db: Factory) -> None:
    """Two workers ask at once for the fairest job: one wins it, the other takes the next."""
    tenant = new_tenant(db)
    for round_ in range(10):
        expected = set(cpu_jobs(db, tenant, 2))

        def take(session: Any, i: int, round_: int = round_) -> str | None:
            job = claim_next(session, queue=CPU_QUEUE, worker_id=f"w{round_}-{i}", lease_s=60)
            return None if job is None else job.id

        assert set(race(take, db)) == expected, f"round {round_}"
