"""``run_job`` in-process on the embedded configuration (SQLite + a storage folder)."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch
from celery.exceptions import Reject
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from api.config import ApiSettings
from api.services import jobs as api_jobs
from gan_engine.checkpoint import load_checkpoint
from gan_engine.data.packs import write_pack
from gan_engine.losses import LOSSES, LossPair
from gan_engine.memory import estimate_training_memory
from gan_engine.run import load_training_data
from store.db import session_scope
from store.jobs import claim_job, request_cancel, request_pause, resume_job
from store.jobs import heartbeat as store_heartbeat
from store.models import Checkpoint, Job, JobEvent, Metric, Sample, TrainedModel, new_id, utcnow
from store.models import Dataset as DatasetRow
from store.storage import LocalStorage, dataset_pack_key, model_config_key, model_weights_key
from tests.worker.conftest import Service, new_tenant, poll, tiny_spec
from worker import lease, reporter, runner, tasks
from worker.evaluators import StorageEvaluatorCache
from worker.runner import LEASE_LOST, NOT_CLAIMED, SHUTTING_DOWN, Outcome, run_job

PNG_MAGIC = b"\x89PNG"


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def run(service: Service, job_id: str, **kwargs: object) -> Outcome:
    return run_job(job_id, settings=service.settings, **kwargs)  # type: ignore[arg-type]


def events(service: Service, job_id: str) -> list[JobEvent]:
    return service.rows(JobEvent, job_id, JobEvent.seq)


def steps_of(service: Service, job_id: str, name: str = "d_loss") -> list[int]:
    return [m.step for m in service.rows(Metric, job_id, Metric.step) if m.name == name]


def first_metric_written(service: Service, job_id: str) -> bool:
    return bool(steps_of(service, job_id))


def test_success_registers_a_model_and_reports_everything(embedded: Service) -> None:
    job_id = embedded.submit(tiny_spec(steps=30))

    assert run(embedded, job_id, worker_id="w1").status == "succeeded"

    job = embedded.job(job_id)
    assert (job.status, job.step, job.attempt, job.error_code) == ("succeeded", 30, 1, None)
    assert job.lease_expires_at is None and job.finished_at is not None
    assert steps_of(embedded, job_id) == [5, 10, 15, 20, 25, 30]
    assert job.latest_metrics["d_loss"]["step"] == 30
    assert {"modes_captured", "reverse_kl"} <= set(job.summary_metrics or {})
    statuses = [e.message for e in events(embedded, job_id) if e.code == "status"]
    assert statuses == ["created → queued", "queued → running (attempt 1)", "running → succeeded"]
    checkpoint_events = [e.step for e in events(embedded, job_id) if e.code == "checkpoint"]
    assert checkpoint_events == [10, 20, 30]

    samples = embedded.rows(Sample, job_id, Sample.step)
    assert [s.step for s in samples] == [10, 20, 30]
    assert all(embedded.storage.get_bytes(s.storage_key).startswith(PNG_MAGIC) for s in samples)
    checkpoints = embedded.rows(Checkpoint, job_id, Checkpoint.step)
    assert [c.step for c in checkpoints] == [10, 20, 30]
    assert "d_loss" in (checkpoints[-1].metrics or {})
    state = load_checkpoint(embedded.storage.get_bytes(checkpoints[1].storage_key))
    assert state["step"] == 20

    [model] = embedded.rows(TrainedModel, job_id)
    assert model.id == job.model_id and model.tenant_id == embedded.tenant_id
    assert model.class_names == [f"mode{k}" for k in range(8)] and model.image_shape == [2]
    config = json.loads(embedded.storage.get_bytes(model_config_key(model.id)))
    assert config["training_step"] == 30 and config["num_classes"] == 8
    assert embedded.storage.exists(model_weights_key(model.id))


def test_image_job_on_an_uploaded_dataset_caches_its_evaluator(
    embedded: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(200, 8, 8), dtype=np.uint8)
    labels = np.arange(200) % 2
    dataset_id = new_id("ds")
    with (embedded.settings.data_dir / "pack.npz").open("wb") as out:
        write_pack(out, images, labels, ["even", "odd"])
    embedded.storage.put_file(dataset_pack_key(dataset_id), embedded.settings.data_dir / "pack.npz")
    with session_scope(embedded.sessions) as session:
        session.add(
            DatasetRow(
                id=dataset_id, tenant_id=embedded.tenant_id, name="noise",
                storage_key=dataset_pack_key(dataset_id), n_images=200, image_shape=[8, 8, 1],
                class_names=["even", "odd"], size_bytes=1,
            )
        )  # fmt: skip
    spec = tiny_spec(
        steps=4,
        dataset={"id": dataset_id, "builtin": None},
        model={"architecture": "dcgan", "width": 8, "image_size": 8, "latent_dim": 8},
        monitor={"log_every": 2, "sample_every": 4, "checkpoint_every": 4,
                 "metrics": ["class_accuracy"]},
    )  # fmt: skip
    job_id = embedded.submit(spec)
    renewals: list[tuple[str | None, float | None]] = []

    def heartbeat(session: Session, **progress: Any) -> Any:
        renewals.append((progress["phase"], progress["eta_s"]))
        return store_heartbeat(session, **progress)

    monkeypatch.setattr(lease, "heartbeat", heartbeat)

    assert run(embedded, job_id).status == "succeeded"

    codes = [e.code for e in events(embedded, job_id) if e.code not in ("status", "checkpoint")]
    assert codes == [
        "evaluation_started", "evaluator_training_started", "evaluator_training_finished",
        "evaluation_finished",
    ]  # fmt: skip
    phases = [phase for phase, _ in renewals]
    assert {"training", "evaluating", "exporting"} <= set(phases)
    assert phases.index("evaluating") < phases.index("exporting")
    assert renewals[-1] == ("exporting", 0.0)
    assert embedded.job(job_id).phase is None  # a finished job has none
    [model] = embedded.rows(TrainedModel, job_id)
    assert model.class_names == ["even", "odd"] and model.image_shape == [8, 8, 1]
    assert "class_accuracy" in (model.summary_metrics or {})
    cached = embedded.storage.list("evaluators/")
    assert len(cached) == 1
    key = cached[0].removeprefix("evaluators/")
    assert StorageEvaluatorCache(embedded.storage).get(key) is not None


def test_duplicate_delivery_trains_once(embedded: Service) -> None:
    job_id = embedded.submit(tiny_spec(steps=10))

    assert run(embedded, job_id).status == "succeeded"
    assert run(embedded, job_id).status == NOT_CLAIMED

    job = embedded.job(job_id)
    assert (job.status, job.attempt) == ("succeeded", 1)
    assert len(embedded.rows(TrainedModel, job_id)) == 1
    assert [e.message for e in events(embedded, job_id)].count("queued → running (attempt 1)") == 1


def test_a_job_another_worker_runs_is_not_touched(embedded: Service) -> None:
    job_id = embedded.submit(tiny_spec(steps=10))
    with session_scope(embedded.sessions) as session:
        assert claim_job(session, job_id=job_id, worker_id="other", lease_s=60) is not None

    assert run(embedded, job_id).status == NOT_CLAIMED

    job = embedded.job(job_id)
    assert (job.status, job.worker_id, job.step) == ("running", "other", 0)
    assert steps_of(embedded, job_id) == []


def test_cancel_request_ends_a_running_job_as_cancelled(
    embedded: Service, background: ThreadPoolExecutor
) -> None:
    job_id = embedded.submit(tiny_spec(steps=1_000_000, monitor={"checkpoint_every": 1000}))
    result: Future[Outcome] = background.submit(run, embedded, job_id)
    poll(lambda: first_metric_written(embedded, job_id), timeout=30, what="the first metrics")

    with session_scope(embedded.sessions) as session:
        request_cancel(session, job_id=job_id, tenant_id=embedded.tenant_id)

    assert result.result(timeout=30).status == "cancelled"
    job = embedded.job(job_id)
    assert job.status == "cancelled" and job.model_id is None and job.lease_expires_at is None
    assert 0 < job.step < 1_000_000
    log = events(embedded, job_id)
    assert "cancel_requested" in [e.code for e in log]
    assert (log[-1].code, log[-1].message) == ("status", "running → cancelled")


def test_nan_losses_fail_the_job_as_diverged(
    embedded: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = iter(range(10_000))

    def nan_from_the_eighth_call(fake: torch.Tensor) -> torch.Tensor:
        return fake.mean() * (math.nan if next(calls) >= 7 else 1.0)

    honest = LOSSES["non_saturating"]
    monkeypatch.setitem(
        LOSSES, "non_saturating", LossPair(honest.discriminator, nan_from_the_eighth_call)
    )
    job_id = embedded.submit(tiny_spec(steps=30))

    assert run(embedded, job_id).status == "failed"

    job = embedded.job(job_id)
    assert (job.status, job.error_code) == ("failed", "diverged")
    assert "diverged at step 8" in (job.error_message or "")
    diverged = [e for e in events(embedded, job_id) if e.code == "diverged"]
    assert len(diverged) == 1 and diverged[0].level == "error"


def test_an_unknown_dataset_id_fails_with_dataset_error(embedded: Service) -> None:
    job_id = embedded.submit(
        tiny_spec(dataset={"id": "ds_doesnotexist", "builtin": None}, model={"image_size": 8})
    )

    assert run(embedded, job_id).status == "failed"

    job = embedded.job(job_id)
    assert (job.status, job.error_code) == ("failed", "dataset_error")
    assert "ds_doesnotexist does not exist" in (job.error_message or "")
    assert job.lease_expires_at is None


def test_another_tenants_dataset_is_not_found(embedded: Service) -> None:
    other = new_tenant(embedded.sessions, "other")
    dataset_id = new_id("ds")
    with session_scope(embedded.sessions) as session:
        session.add(
            DatasetRow(
                id=dataset_id, tenant_id=other, name="theirs", n_images=1, size_bytes=1,
                storage_key=dataset_pack_key(dataset_id), image_shape=[8, 8, 1], class_names=None,
            )
        )  # fmt: skip
    job_id = embedded.submit(
        tiny_spec(dataset={"id": dataset_id, "builtin": None}, model={"image_size": 8})
    )

    assert run(embedded, job_id).status == "failed"
    assert embedded.job(job_id).error_code == "dataset_error"


def test_a_spec_that_no_longer_validates_fails_with_invalid_spec(embedded: Service) -> None:
    job_id = embedded.submit(tiny_spec())
    with session_scope(embedded.sessions) as session:  # a spec stored by an older release
        job = session.get(Job, job_id)
        assert job is not None
        job.spec = {**job.spec, "model": {**job.spec["model"], "architecture": "transformer"}}

    assert run(embedded, job_id).status == "failed"

    job = embedded.job(job_id)
    assert job.error_code == "invalid_spec" and "model.architecture" in (job.error_message or "")


def test_max_runtime_fails_with_its_own_code(embedded: Service) -> None:
    job_id = embedded.submit(tiny_spec(steps=1000, training={"max_runtime_s": 0.001}))

    assert run(embedded, job_id).status == "failed"

    job = embedded.job(job_id)
    assert (job.error_code, job.step) == ("max_runtime_exceeded", 1)
    assert "max_runtime_s" in (job.error_message or "")
    assert "max_runtime" in [e.code for e in events(embedded, job_id)]


def test_an_unexpected_error_fails_the_job_as_internal_error(
    embedded: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_export(*_: object) -> dict[str, bytes]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("worker.runner.export_files", broken_export)
    job_id = embedded.submit(tiny_spec(steps=10))

    assert run(embedded, job_id).status == "failed"

    job = embedded.job(job_id)
    assert (job.status, job.error_code) == ("failed", "internal_error")
    assert "RuntimeError: disk on fire" in (job.error_message or "")
    assert job.lease_expires_at is None and job.model_id is None


def test_a_lost_lease_stops_the_run_without_writing(
    embedded: Service, background: ThreadPoolExecutor
) -> None:
    job_id = embedded.submit(tiny_spec(steps=1_000_000, monitor={"checkpoint_every": 1000}))
    result: Future[Outcome] = background.submit(run, embedded, job_id)
    poll(lambda: first_metric_written(embedded, job_id), timeout=30, what="the first metrics")

    with session_scope(embedded.sessions) as session:  # the reaper gave the job to someone else
        session.execute(update(Job).where(Job.id == job_id).values(worker_id="new-owner"))

    assert result.result(timeout=30).status == LEASE_LOST
    job = embedded.job(job_id)
    assert (job.status, job.worker_id) == ("running", "new-owner")
    statuses = [e.message for e in events(embedded, job_id) if e.code == "status"]
    assert statuses == ["created → queued", "queued → running (attempt 1)"]  # never finished


def test_shutdown_hands_the_job_back_and_the_next_run_resumes_at_its_checkpoint(
    embedded: Service, background: ThreadPoolExecutor
) -> None:
    spec = tiny_spec(steps=120, monitor={"checkpoint_every": 1000})
    job_id, reference_id = embedded.submit(spec), embedded.submit(spec)
    shutdown, requeued = threading.Event(), []
    result: Future[Outcome] = background.submit(
        run, embedded, job_id, shutdown=shutdown, requeue=requeued.append
    )
    poll(lambda: first_metric_written(embedded, job_id), timeout=30, what="the first metrics")
    shutdown.set()  # what the worker's SIGTERM handler does

    assert result.result(timeout=30).status == "interrupted"
    assert requeued == [job_id]
    job = embedded.job(job_id)
    [checkpoint] = embedded.rows(Checkpoint, job_id)
    assert job.status == "interrupted" and checkpoint.step == job.step
    stopped_at = checkpoint.step
    assert 0 < stopped_at < 120
    # An interruption reads as one, not as an error.
    assert job.error_code is None and job.error_message is None
    last = events(embedded, job_id)[-1]
    assert (last.level, last.code, last.message) == (
        "info",
        "status",
        f"running → interrupted: worker shut down at step {stopped_at}; the job resumes there",
    )

    assert run(embedded, job_id).status == "succeeded"

    job = embedded.job(job_id)
    assert (job.status, job.attempt, job.step) == ("succeeded", 2, 120)
    resumed = [e for e in events(embedded, job_id) if e.code == "resumed"]
    assert [e.message for e in resumed] == [f"resumed from step {stopped_at}"]
    assert steps_of(embedded, job_id) == list(range(5, 121, 5))

    # The resumed run continues the same curve: bit-identical to an uninterrupted run on CPU.
    assert run(embedded, reference_id).status == "succeeded"
    losses = {
        job: {(m.name, m.step): m.value for m in embedded.rows(Metric, job) if "loss" in m.name}
        for job in (job_id, reference_id)
    }
    assert losses[job_id] == losses[reference_id]


def test_pause_checkpoints_and_frees_the_worker_and_resume_goes_on_there(
    embedded: Service, background: ThreadPoolExecutor
) -> None:
    spec = tiny_spec(steps=400, monitor={"checkpoint_every": 1000})
    job_id, reference_id = embedded.submit(spec), embedded.submit(spec)
    requeued: list[str] = []
    result: Future[Outcome] = background.submit(run, embedded, job_id, requeue=requeued.append)
    poll(lambda: first_metric_written(embedded, job_id), timeout=30, what="the first metrics")
    with session_scope(embedded.sessions) as session:
        request_pause(session, job_id=job_id, tenant_id=embedded.tenant_id)

    assert result.result(timeout=30).status == "paused"
    assert requeued == []  # a paused job waits for its owner, not for a worker
    job = embedded.job(job_id)
    [checkpoint] = embedded.rows(Checkpoint, job_id)
    stopped_at = checkpoint.step
    assert job.status == "paused" and job.step == stopped_at and 0 < stopped_at < 400
    assert run(embedded, job_id).status == NOT_CLAIMED  # a stale message claims nothing
    with session_scope(embedded.sessions) as session:
        assert resume_job(session, job_id=job_id, tenant_id=embedded.tenant_id)[1]

    assert run(embedded, job_id).status == "succeeded"

    resumed = [e.message for e in events(embedded, job_id) if e.code == "resumed"]
    assert resumed == [f"resumed from step {stopped_at}"]
    assert run(embedded, reference_id).status == "succeeded"
    losses = {
        job: {(m.name, m.step): m.value for m in embedded.rows(Metric, job) if "loss" in m.name}
        for job in (job_id, reference_id)
    }
    assert losses[job_id] == losses[reference_id]


class SentTasks:
    """A Celery client that records what it is asked to send."""

    def __init__(self) -> None:
        self.job_ids: list[str] = []

    def send_task(self, name: str, *, args: list[str], kwargs: dict[str, str], queue: str) -> None:
        assert kwargs == {"queue": queue}  # the worker claims the fairest job of that queue
        self.job_ids.append(args[0])


def test_a_continued_job_is_bit_identical_to_one_run_to_its_total(embedded: Service) -> None:
    short, whole = tiny_spec(steps=40), tiny_spec(steps=70)
    source_id, reference_id = embedded.submit(short), embedded.submit(whole)
    assert run(embedded, source_id).status == "succeeded"
    celery = SentTasks()
    with session_scope(embedded.sessions) as session:
        continued = api_jobs.continue_job(
            session, storage=embedded.storage, celery=celery,  # type: ignore[arg-type]
            settings=ApiSettings(data_dir=embedded.settings.data_dir), tenant_id=embedded.tenant_id,
            job_id=source_id, steps=70,
        )  # fmt: skip
    assert celery.job_ids == [continued.id] and continued.continued_from == source_id

    assert run(embedded, continued.id).status == "succeeded"
    assert run(embedded, reference_id).status == "succeeded"

    assert steps_of(embedded, continued.id) == list(range(45, 71, 5))  # from the checkpoint on
    [source_model] = embedded.rows(TrainedModel, source_id)
    [model] = embedded.rows(TrainedModel, continued.id)
    [reference] = embedded.rows(TrainedModel, reference_id)
    continued_weights, reference_weights, source_weights = (
        safetensors.torch.load(embedded.storage.get_bytes(model_weights_key(m.id)))
        for m in (model, reference, source_model)
    )
    assert continued_weights.keys() == reference_weights.keys()
    assert all(torch.equal(continued_weights[k], reference_weights[k]) for k in reference_weights)
    assert any(not torch.equal(continued_weights[k], source_weights[k]) for k in source_weights)
    assert embedded.job(source_id).model_id == source_model.id  # the source keeps its model


# --- shutting down, memory, storage, a database blink -------------------------------------------


def test_a_worker_that_is_shutting_down_claims_nothing(embedded: Service) -> None:
    job_id = embedded.submit(tiny_spec(steps=10))
    shutdown = threading.Event()
    shutdown.set()

    assert run(embedded, job_id, shutdown=shutdown).status == SHUTTING_DOWN

    job = embedded.job(job_id)
    assert (job.status, job.attempt, job.worker_id) == ("queued", 0, None)


def test_the_task_rejects_its_message_back_to_the_queue_once_shutdown_is_set(
    embedded: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "get_settings", lambda: embedded.settings)
    monkeypatch.setattr(tasks, "SHUTDOWN", threading.Event())
    job_id = embedded.submit(tiny_spec(steps=10))
    tasks.SHUTDOWN.set()

    with pytest.raises(Reject) as rejected:
        tasks.train(job_id)

    assert rejected.value.requeue is True
    assert embedded.job(job_id).attempt == 0
    assert [e.message for e in events(embedded, job_id)] == ["created → queued"]


def test_a_spec_over_a_lowered_memory_budget_fails_before_training(embedded: Service) -> None:
    spec = tiny_spec(steps=10)
    job_id = embedded.submit(spec)
    _, data = load_training_data(spec, data_dir=embedded.settings.ganforge_data_dir)
    needed = estimate_training_memory(
        spec, sample_shape=data.sample_shape, num_classes=data.num_classes, num_samples=len(data)
    ).total_bytes
    embedded.settings.max_job_memory_bytes = needed - 1  # lowered since the job was submitted

    assert run(embedded, job_id).status == "failed"

    job = embedded.job(job_id)
    assert (job.error_code, job.step) == ("memory_exceeded", 0)
    assert "MAX_JOB_MEMORY_BYTES, lowered since the job was submitted" in (job.error_message or "")
    assert "training.batch_size" in (job.error_message or "")
    assert steps_of(embedded, job_id) == []


def test_a_job_whose_memory_grows_past_the_budget_is_stopped_cleanly(
    embedded: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    leak: list[np.ndarray] = []

    def leaking_generator_loss(fake: torch.Tensor) -> torch.Tensor:
        leak.append(np.ones(16 * 2**20, dtype=np.uint8))  # 16 MiB a step, really touched
        return honest.generator(fake)

    honest = LOSSES["non_saturating"]
    monkeypatch.setitem(
        LOSSES, "non_saturating", LossPair(honest.discriminator, leaking_generator_loss)
    )
    embedded.settings.max_job_memory_bytes = 256 * 2**20  # far above the tiny spec's estimate
    job_id = embedded.submit(tiny_spec(steps=1_000))

    outcome = run(embedded, job_id)

    leak.clear()
    job = embedded.job(job_id)
    assert (outcome.status, outcome.error_code) == ("failed", "memory_exceeded")
    assert (job.status, job.error_code, job.lease_expires_at) == ("failed", "memory_exceeded", None)
    assert 4 < job.step < 40  # ~16 steps of 16 MiB; not at once, and well before the end
    assert f"stopped at step {job.step}" in (job.error_message or "")
    assert "256.0 MiB a job (MAX_JOB_MEMORY_BYTES)" in (job.error_message or "")
    assert "lower training.batch_size or model.width" in (job.error_message or "")


def test_a_checkpoint_that_storage_refuses_fails_the_job_clearly(
    embedded: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest_put = LocalStorage.put_bytes

    def refuse_checkpoints(self: LocalStorage, key: str, data: bytes, *args: object) -> None:
        if "/checkpoints/" in key and "00000020" in key:
            raise PermissionError(13, "Permission denied", key)
        honest_put(self, key, data, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(LocalStorage, "put_bytes", refuse_checkpoints)
    job_id = embedded.submit(tiny_spec(steps=100))

    assert run(embedded, job_id).status == "failed"

    job = embedded.job(job_id)
    assert (job.status, job.error_code, job.step) == ("failed", "storage_unavailable", 20)
    assert "the checkpoint of step 20" in (job.error_message or "")
    assert "PermissionError" in (job.error_message or "")
    assert [c.step for c in embedded.rows(Checkpoint, job_id, Checkpoint.step)] == [10]
    assert job.lease_expires_at is None and job.model_id is None


def test_metric_writes_survive_a_database_blink(
    embedded: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest_record = reporter.record_metrics
    refused: list[int] = []

    def blinking_record(session: Session, *, job_id: str, step: int, **kwargs: Any) -> None:
        if 10 <= step <= 20 and refused.count(step) < 2:  # steps 10-20 fail twice each
            refused.append(step)
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        honest_record(session, job_id=job_id, step=step, **kwargs)

    monkeypatch.setattr(reporter, "record_metrics", blinking_record)
    job_id = embedded.submit(tiny_spec(steps=40))

    assert run(embedded, job_id).status == "succeeded"

    assert refused, "the blink never happened"
    assert steps_of(embedded, job_id) == list(range(5, 41, 5))  # every point, once
    assert steps_of(embedded, job_id, "g_loss") == list(range(5, 41, 5))


def test_the_final_write_survives_a_blink_even_after_an_unclear_commit(
    embedded: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest_succeed = runner.succeed_job
    tries: list[str] = []

    def committed_then_lost(session: Session, **kwargs: Any) -> Any:
        tries.append("try")
        model = honest_succeed(session, **kwargs)
        if len(tries) == 1:  # the commit reaches the server, its answer is lost
            session.commit()
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))
        return model

    monkeypatch.setattr(runner, "succeed_job", committed_then_lost)
    job_id = embedded.submit(tiny_spec(steps=10))

    assert run(embedded, job_id).status == "succeeded"

    assert tries == ["try", "try"]  # the retry found the job already succeeded: ours
    job = embedded.job(job_id)
    [model] = embedded.rows(TrainedModel, job_id)
    assert job.model_id == model.id and embedded.storage.exists(model_weights_key(model.id))


def test_a_failure_is_written_even_if_the_database_blinks_then(
    embedded: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    honest_finish = runner.finish_job
    refused: list[int] = []

    def blinking_finish(session: Session, **kwargs: Any) -> bool:
        if len(refused) < 3:
            refused.append(1)
            raise OperationalError("UPDATE", {}, Exception("connection refused"))
        return honest_finish(session, **kwargs)

    monkeypatch.setattr(runner, "finish_job", blinking_finish)
    job_id = embedded.submit(tiny_spec(steps=1000, training={"max_runtime_s": 0.001}))

    assert run(embedded, job_id).status == "failed"

    assert len(refused) == 3
    job = embedded.job(job_id)
    assert (job.status, job.error_code) == ("failed", "max_runtime_exceeded")


def test_a_write_that_fails_for_a_bug_fails_the_job_and_does_not_block_its_end(
    embedded: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_record_sample(session: Session, **_: Any) -> None:
        raise RuntimeError("a bug in the sample row")

    monkeypatch.setattr(reporter, "record_sample", broken_record_sample)
    job_id = embedded.submit(tiny_spec(steps=30))

    assert run(embedded, job_id).status == "failed"

    job = embedded.job(job_id)
    assert (job.status, job.error_code, job.lease_expires_at) == ("failed", "internal_error", None)
    assert "a bug in the sample row" in (job.error_message or "")


# --- the fair claim: a message is the trigger of one claim on its queue -------------------------


def test_a_message_trains_the_fairest_job_of_its_queue(embedded: Service) -> None:
    """Two jobs of one tenant wait, then one of another; the tenant's first runs, and the next
    message (of the tenant's second job) trains the other tenant's, served never before."""
    first, second = embedded.submit(tiny_spec(steps=10)), embedded.submit(tiny_spec(steps=10))
    other = Service(**{**vars(embedded), "tenant_id": new_tenant(embedded.sessions, "other")})
    theirs = other.submit(tiny_spec(steps=10))
    queue = embedded.job(first).queue

    with session_scope(embedded.sessions) as session:  # the first is running elsewhere
        assert claim_job(session, job_id=first, worker_id="elsewhere", lease_s=60)
    outcome = run(embedded, second, queue=queue)

    assert (outcome.status, outcome.job_id) == ("succeeded", theirs)
    assert embedded.job(second).status == "queued"  # its turn comes with the next message


def test_a_message_with_nothing_waiting_takes_over_its_own_lost_job(embedded: Service) -> None:
    job_id = embedded.submit(tiny_spec(steps=10))
    with session_scope(embedded.sessions) as session:  # a worker that died, its lease run out
        assert claim_job(session, job_id=job_id, worker_id="dead", lease_s=0.001)
    poll(lambda: embedded.job(job_id).lease_expires_at < utcnow(), timeout=5, what="expiry")

    outcome = run(embedded, job_id, queue=embedded.job(job_id).queue)

    job = embedded.job(job_id)
    assert (outcome.status, outcome.job_id) == ("succeeded", job_id)
    assert (job.status, job.attempt, job.workers_lost) == ("succeeded", 2, 1)
