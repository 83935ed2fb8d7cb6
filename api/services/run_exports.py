"""A job's run in the formats people already look at runs with: a CSV of its metrics (one row a
logged step, one column a metric) and TensorBoard event files (scalars, sample grids, warnings).
Both are built from what the job stored, in bounded pieces, so a long run costs no more memory
than a short one."""

from __future__ import annotations

import csv
import io
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.services.jobs import get_job
from gan_engine.events import Event
from store.db import session_scope
from store.models import EventLevel, JobEvent, Metric, Sample
from store.storage import ObjectStorage

STEPS_PER_READ = 2000  # logged steps read (and CSV rows written) at a time
MAX_TENSORBOARD_SAMPLES = 100  # sample grids in an export, evenly spread, the last one always
MAX_TENSORBOARD_EVENTS = 1000  # warnings and errors written as text


def metric_names(session: Session, *, tenant_id: str, job_id: str) -> list[str]:
    """The job's metric names (NotFound for another tenant's job): the CSV's columns."""
    get_job(session, tenant_id=tenant_id, job_id=job_id)
    return list(
        session.scalars(
            select(Metric.name).where(Metric.job_id == job_id).distinct().order_by(Metric.name)
        )
    )


def _points(
    sessions: sessionmaker[Session], job_id: str
) -> Iterator[list[tuple[int, str, float | None]]]:
    """Every (step, name, value) of the job, steps ascending, a few thousand steps a list."""
    after = -1
    while True:
        with session_scope(sessions) as session:
            steps = session.scalars(
                select(Metric.step).where(Metric.job_id == job_id, Metric.step > after)
                .distinct().order_by(Metric.step).limit(STEPS_PER_READ)
            ).all()  # fmt: skip
            if not steps:
                return
            rows = session.execute(
                select(Metric.step, Metric.name, Metric.value)
                .where(Metric.job_id == job_id, Metric.step > after, Metric.step <= steps[-1])
                .order_by(Metric.step, Metric.name)
            ).all()  # fmt: skip
        yield [(step, name, value) for step, name, value in rows]
        after = steps[-1]


def metrics_csv(sessions: sessionmaker[Session], job_id: str, names: list[str]) -> Iterator[str]:
    """``step,<name>,...`` then a row per logged step; an empty cell: not logged at that step,
    ``nan``: logged as NaN/inf."""
    columns = {name: i for i, name in enumerate(names, start=1)}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", *names])
    for points in _points(sessions, job_id):
        row: list[object] = []
        for step, name, value in points:
            if not row or row[0] != step:
                if row:
                    writer.writerow(row)
                row = [step] + [""] * len(names)
            row[columns[name]] = "nan" if value is None else repr(value)
        writer.writerow(row)
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    if out.getvalue():
        yield out.getvalue()


def _spread(steps: list[int], most: int) -> list[int]:
    """At most ``most`` of ``steps`` (ascending), evenly spread, the first and last kept."""
    if len(steps) <= most:
        return steps
    picked = {steps[round(i * (len(steps) - 1) / (most - 1))] for i in range(most)}
    return sorted(picked)


def tensorboard_zip(
    sessions: sessionmaker[Session], storage: ObjectStorage, *, tenant_id: str, job_id: str
) -> Path:
    """A zip of ``<job_id>/events.out.tfevents.*`` in a temporary file the caller deletes."""
    from gan_engine.tensorboard import write_run  # imports TensorBoard's writer

    with session_scope(sessions) as session:
        get_job(session, tenant_id=tenant_id, job_id=job_id)
        sample_keys: dict[int, str] = {
            step: key
            for step, key in session.execute(
                select(Sample.step, Sample.storage_key)
                .where(Sample.job_id == job_id).order_by(Sample.step)
            )
        }  # fmt: skip
        events = [
            Event(row.step or 0, row.level, row.code, row.message)  # type: ignore[arg-type]
            for row in session.scalars(
                select(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.level != EventLevel.INFO)
                .order_by(JobEvent.seq).limit(MAX_TENSORBOARD_EVENTS)
            )
        ]  # fmt: skip
    steps = _spread(list(sample_keys), MAX_TENSORBOARD_SAMPLES)
    samples = ((step, storage.get_bytes(sample_keys[step])) for step in steps)
    metrics = (point for points in _points(sessions, job_id) for point in points)
    with tempfile.TemporaryDirectory(prefix="ganforge-tb-") as folder:
        run = Path(folder) / job_id
        write_run(run, metrics=metrics, samples=samples, events=events)
        descriptor, name = tempfile.mkstemp(prefix="ganforge-tb-", suffix=".zip")
        os.close(descriptor)
        archive = Path(name)
        try:
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
                for path in sorted(run.iterdir()):
                    zipped.write(path, f"{job_id}/{path.name}")
        except BaseException:
            archive.unlink(missing_ok=True)
            raise
    return archive
