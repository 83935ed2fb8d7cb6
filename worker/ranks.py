"""A claimed job with ``training.devices`` N > 1: N ranks under torchrun, in a subprocess.

The worker process (``run_as_ranks``) forks nothing itself: a daemonic Celery child may not
start processes, and a process that has initialised CUDA must not fork. It starts
``python -m torch.distributed.run ... -m worker.ranks CONTROL`` and waits. Rank 0 does what the
runner does in-process (``run_claimed``: the lease and its heartbeat, cancel and pause checks,
reports, checkpoints, the final write) and writes its ``Outcome`` to CONTROL/outcome.json; the
other ranks only train (rank 0's stop decisions reach them through the Trainer). CONTROL/job.json
holds the job, the lease's worker id and the settings; CONTROL/shutdown appears when the worker
is shutting down.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from gan_engine import distributed
from gan_engine.run import build_trainer
from gan_engine.spec import parse_spec
from gan_engine.trainer import pick_device
from store.db import get_sessionmaker, session_scope
from store.jobs import finish_job, get_job
from store.settings import Settings
from store.storage import storage_from_url
from worker.outcome import INTERNAL_ERROR, LEASE_LOST, Outcome
from worker.runner import _Run, resume_from_newest, run_claimed

log = logging.getLogger("ganforge.worker")

JOB_FILE, OUTCOME_FILE, SHUTDOWN_FILE = "job.json", "outcome.json", "shutdown"
POLL_S = 0.2
EXIT_GRACE_S = 30.0  # after rank 0's outcome, the others' time to leave before they are stopped


def run_as_ranks(
    job_id: str, worker_id: str, settings: Settings, devices: int, shutdown: threading.Event
) -> Outcome:
    """Run the claimed job as ``devices`` ranks and return rank 0's outcome (the ranks dying
    without one: the job failed as an internal error, written here)."""
    with tempfile.TemporaryDirectory(prefix="ganforge-ranks-") as folder:
        control = Path(folder)
        facts = {"job_id": job_id, "worker_id": worker_id, "settings": _plain(settings)}
        (control / JOB_FILE).write_text(json.dumps(facts))
        command = distributed.launch_command(devices, "worker.ranks", [str(control)])
        ranks = subprocess.Popen(command)
        outcome_path = control / OUTCOME_FILE
        try:
            while ranks.poll() is None and not outcome_path.exists():
                if shutdown.wait(POLL_S):
                    (control / SHUTDOWN_FILE).touch()
            try:
                ranks.wait(timeout=EXIT_GRACE_S)
            except subprocess.TimeoutExpired:
                log.warning("job %s: ranks still running after rank 0 ended; stopping", job_id)
        finally:
            if ranks.poll() is None:
                ranks.terminate()  # torchrun stops its ranks
                ranks.wait()
        if outcome_path.exists():
            return Outcome(**json.loads(outcome_path.read_text()))
    message = f"the {devices} training ranks exited with status {ranks.returncode}"
    return _fail_unfinished(job_id, worker_id, settings, message)


def _fail_unfinished(job_id: str, worker_id: str, settings: Settings, message: str) -> Outcome:
    outcome = Outcome.failed(INTERNAL_ERROR, f"internal error ({message}); please report it")
    with session_scope(get_sessionmaker(settings.database_url)) as session:
        written = finish_job(
            session,
            job_id=job_id,
            worker_id=worker_id,
            status=outcome.status,
            error_code=outcome.error_code,
            error_message=outcome.message,
        )
    return outcome if written else Outcome(LEASE_LOST)


def _plain(settings: Settings) -> dict[str, Any]:
    """The settings as JSON values, secrets included (the control folder is private: 0700)."""
    values = settings.model_dump(mode="json")
    for name in type(settings).model_fields:
        if isinstance(secret := getattr(settings, name), SecretStr):
            values[name] = secret.get_secret_value()
    return values


def main(control: Path) -> None:
    facts = json.loads((control / JOB_FILE).read_text())
    job_id, worker_id = facts["job_id"], facts["worker_id"]
    settings = Settings(**facts["settings"], _env_file=None)  # type: ignore[call-arg]
    sessions = get_sessionmaker(settings.database_url)
    with session_scope(sessions) as session:
        job = get_job(session, job_id=job_id)
        spec_data, tenant_id = dict(job.spec), job.tenant_id
    spec = parse_spec(spec_data)
    with distributed.process_group(pick_device(spec.training.device)) as world:
        if world.is_main:
            shutdown = _watched(control / SHUTDOWN_FILE)
            outcome = run_claimed(job_id, worker_id, settings, spec_data, tenant_id, shutdown)
            (control / OUTCOME_FILE).write_text(json.dumps(dataclasses.asdict(outcome)))
            return
        storage = storage_from_url(settings.storage_url, settings)
        run = _Run(job_id, tenant_id, settings, sessions, storage, None, None)  # type: ignore[arg-type]
        spec, dataset = run.load_data(spec)
        trainer = build_trainer(spec, dataset)
        resume_from_newest(trainer, sessions, storage, job_id)
        trainer.fit()


def _watched(path: Path) -> threading.Event:
    """An event set once ``path`` exists (the worker's shutdown, relayed)."""
    event = threading.Event()

    def watch() -> None:
        while not event.is_set():
            if path.exists():
                event.set()
            threading.Event().wait(POLL_S)

    threading.Thread(target=watch, name="shutdown-watch", daemon=True).start()
    return event


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main(Path(sys.argv[1]))
