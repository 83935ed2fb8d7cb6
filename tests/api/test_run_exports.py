"""A job's metrics as CSV and its run as TensorBoard event files, over HTTP."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from api.services import run_exports
from gan_engine.images import png_bytes
from store import jobs as store_jobs
from store.db import session_scope
from store.storage import ObjectStorage, sample_key
from tests.api.conftest import Account, assert_error
from tests.api.test_jobs import TINY, run_as_worker


@pytest.fixture
def recorded_job(
    client: TestClient, account: Account, sessions: sessionmaker[Session], storage: ObjectStorage
) -> str:
    """A running job with losses at steps 1-6 (a NaN at 5), an FID at 3 and 6, sample grids at
    2, 4, 6 and one warning."""
    job_id = client.post("/v1/jobs", headers=account.headers, json=TINY).json()["id"]
    run_as_worker(sessions, job_id)
    with session_scope(sessions) as session:
        for step in range(1, 7):
            g_loss = float("nan") if step == 5 else -step / 10
            store_jobs.record_metrics(
                session, job_id=job_id, step=step, metrics={"d_loss": step / 10, "g_loss": g_loss}
            )
        for step in (3, 6):
            store_jobs.record_metrics(
                session, job_id=job_id, step=step, metrics={"fid": 30.0 / step}
            )
        for step in (2, 4, 6):
            image = np.full((4, 6, 3), 40 * step, dtype=np.uint8)
            storage.put_bytes(sample_key(job_id, step), png_bytes(image))
            store_jobs.record_sample(
                session, job_id=job_id, step=step, storage_key=sample_key(job_id, step)
            )
        store_jobs.record_event(
            session, job_id=job_id, step=4, level="warning", code="mode_collapse",
            message="samples look alike; try minibatch discrimination",
        )  # fmt: skip
    return job_id


def test_metrics_csv_has_a_row_per_logged_step_and_a_column_per_metric(
    client: TestClient, account: Account, recorded_job: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_exports, "STEPS_PER_READ", 4)  # two reads, a row never split

    response = client.get(f"/v1/jobs/{recorded_job}/metrics.csv", headers=account.headers)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert f'filename="{recorded_job}-metrics.csv"' in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["step", "d_loss", "fid", "g_loss"]
    assert rows[1:] == [
        ["1", "0.1", "", "-0.1"],
        ["2", "0.2", "", "-0.2"],
        ["3", "0.3", "10.0", "-0.3"],
        ["4", "0.4", "", "-0.4"],
        ["5", "0.5", "", "nan"],
        ["6", "0.6", "5.0", "-0.6"],
    ]


def test_a_job_without_metrics_is_a_header_only_csv(client: TestClient, account: Account) -> None:
    job_id = client.post("/v1/jobs", headers=account.headers, json=TINY).json()["id"]
    response = client.get(f"/v1/jobs/{job_id}/metrics.csv", headers=account.headers)
    assert (response.status_code, response.text) == (200, "step\n")


def test_tensorboard_export_holds_the_scalars_the_grids_and_the_warnings(
    client: TestClient,
    account: Account,
    recorded_job: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run_exports, "MAX_TENSORBOARD_SAMPLES", 2)

    response = client.get(f"/v1/jobs/{recorded_job}/tensorboard", headers=account.headers)

    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        assert len(names) == 1 and names[0].startswith(f"{recorded_job}/events.out.tfevents.")
        archive.extractall(tmp_path)
    run = EventAccumulator(str(tmp_path / recorded_job), size_guidance={"images": 0, "scalars": 0})
    run.Reload()
    tags = run.Tags()
    assert set(tags["scalars"]) == {"losses/d_loss", "losses/g_loss", "quality/fid"}
    assert [(e.step, e.value) for e in run.Scalars("quality/fid")] == [(3, 10.0), (6, 5.0)]
    g_loss = [e.value for e in run.Scalars("losses/g_loss")]
    assert np.isnan(g_loss[4]) and g_loss[5] == pytest.approx(-0.6)
    images = run.Images("samples")
    assert [(i.step, i.width, i.height) for i in images] == [(2, 6, 4), (6, 6, 4)]  # first, last
    [warning] = run.Tensors("events/warning/text_summary")
    assert warning.step == 4
    assert b"mode_collapse: samples look alike" in warning.tensor_proto.string_val[0]


@pytest.mark.parametrize("path", ["metrics.csv", "tensorboard"])
def test_another_tenants_job_is_not_found(
    client: TestClient, other: Account, recorded_job: str, path: str
) -> None:
    response = client.get(f"/v1/jobs/{recorded_job}/{path}", headers=other.headers)
    assert_error(response, 404, "not_found")


def test_the_export_leaves_no_temporary_file(
    client: TestClient, account: Account, recorded_job: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    response = client.get(f"/v1/jobs/{recorded_job}/tensorboard", headers=account.headers)
    assert response.status_code == 200
    assert list(scratch.iterdir()) == []
