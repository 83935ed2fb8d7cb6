"""The endpoints the dashboard needs: presets, builtin dataset details and previews, upload
previews and class counts, the stream's phase; and the dashboard and docs themselves (served from
the installed packages under a strict CSP)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from api.services import dataset_previews
from api.services.stream import poll
from api.web import CONTENT_SECURITY_POLICY
from gan_engine.spec import load_preset, parse_spec
from store import jobs as store_jobs
from store.db import session_scope
from tests.api.conftest import Account, assert_error
from tests.api.test_datasets import npz_bytes, upload
from tests.api.test_jobs import TINY, run_as_worker, submit

PRESET_NAMES = ["cgan", "dcgan", "sngan", "wgan", "wgan-gp"]


def image_of(response: object) -> Image.Image:
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "image/png"  # type: ignore[attr-defined]
    return Image.open(io.BytesIO(response.content))  # type: ignore[attr-defined]


# --- presets -----------------------------------------------------------------------------------


def test_presets_list_every_engine_preset_with_its_fields(
    client: TestClient, account: Account
) -> None:
    response = client.get("/v1/presets", headers=account.headers)
    assert response.status_code == 200, response.text
    presets = {p["name"]: p for p in response.json()["data"]}
    assert sorted(presets) == PRESET_NAMES
    assert presets["cgan"]["fields"] == load_preset("cgan")
    assert presets["cgan"]["fields"]["model"]["conditioning"] == "concat"
    assert presets["wgan-gp"]["description"].startswith("Gulrajani et al. 2017")
    for name in presets:  # each one is a spec's valid preset
        parse_spec({"preset": name, "dataset": {"builtin": "digits"}})


def test_presets_need_a_key(client: TestClient) -> None:
    assert_error(client.get("/v1/presets"), 401)


# --- builtin datasets --------------------------------------------------------------------------


def test_builtin_detail_counts_its_classes(client: TestClient, account: Account) -> None:
    response = client.get("/v1/datasets/builtin/digits", headers=account.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "digits" and body["split"] == "train"
    assert len(body["class_counts"]) == 10 and sum(body["class_counts"]) == body["n_images"]


def test_builtin_preview_is_a_row_a_class(client: TestClient, account: Account) -> None:
    grid = image_of(client.get("/v1/datasets/builtin/digits/preview.png", headers=account.headers))
    tile = 8 + 2  # 8×8 digits, 2 px padding
    assert grid.size == (8 * tile + 2, 10 * tile + 2)
    points = image_of(client.get("/v1/datasets/builtin/ring8/preview.png", headers=account.headers))
    assert points.mode == "RGB"


def test_fashion_mnist_from_the_data_dir(client: TestClient, account: Account) -> None:
    if dataset_previews.missing_files("fashion-mnist", "train"):
        pytest.skip("Fashion-MNIST's files are not in GANFORGE_DATA_DIR")
    body = client.get("/v1/datasets/builtin/fashion-mnist", headers=account.headers).json()
    assert body["class_counts"] == [6000] * 10
    grid = image_of(
        client.get("/v1/datasets/builtin/fashion-mnist/preview.png", headers=account.headers)
    )
    assert grid.size == (8 * 30 + 2, 10 * 30 + 2)


def test_a_builtin_whose_files_are_missing_is_503_and_never_downloads(
    client: TestClient, account: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANFORGE_DATA_DIR", str(tmp_path / "empty"))

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr("gan_engine.data.idx._download_all", no_download)
    for path in ("/v1/datasets/builtin/mnist", "/v1/datasets/builtin/mnist/preview.png"):
        error = assert_error(client.get(path, headers=account.headers), 503, "dataset_unavailable")
        assert "GANFORGE_DATA_DIR" in error["message"] and "t10k-images" in error["message"]
    assert not (tmp_path / "empty").exists()


def test_an_unknown_builtin_is_404(client: TestClient, account: Account) -> None:
    assert_error(client.get("/v1/datasets/builtin/cifar10", headers=account.headers), 404)
    assert_error(client.get("/v1/datasets/builtin/BAD!", headers=account.headers), 422)


# --- uploaded datasets -------------------------------------------------------------------------


def test_an_upload_stores_its_class_counts_and_has_a_preview(
    client: TestClient, account: Account, other: Account
) -> None:
    labels = np.array([0, 0, 0, 1, 2, 2], dtype=np.int64)
    images = np.stack([np.full((6, 6), 40 * (k + 1), dtype=np.uint8) for k in labels])
    data = npz_bytes(images=images, labels=labels, class_names=np.array(["a", "b", "c"]))
    created = upload(client, account, data, "three.npz").json()
    assert created["class_counts"] == [3, 1, 2]
    listed = client.get("/v1/datasets", headers=account.headers).json()["data"]
    assert listed[0]["class_counts"] == [3, 1, 2]
    path = f"/v1/datasets/{created['id']}/preview.png"
    grid = np.asarray(image_of(client.get(path, headers=account.headers)))
    tile = 6 + 2
    assert grid.shape == (3 * tile + 2, 8 * tile + 2)
    assert grid[2 + 3, 2 + 3] == 40 and grid[2 + tile + 3, 2 + 3] == 80  # class a, class b rows
    assert grid[2 + tile + 3, 2 + tile + 3] == 0  # b has one image: the rest of its row is blank
    assert_error(client.get(path, headers=other.headers), 404)


def test_an_unlabelled_upload_has_no_class_counts(client: TestClient, account: Account) -> None:
    images = np.zeros((5, 6, 6), dtype=np.uint8)
    created = upload(client, account, npz_bytes(images=images), "plain.npz").json()
    assert created["class_counts"] is None
    grid = image_of(
        client.get(f"/v1/datasets/{created['id']}/preview.png", headers=account.headers)
    )
    assert grid.size == (8 * 8 + 2, 8 + 2)


# --- the stream's phase ------------------------------------------------------------------------


def test_stream_status_carries_the_phase(
    client: TestClient, account: Account, sessions: sessionmaker[Session]
) -> None:
    job_id = submit(client, account, TINY).json()["id"]
    snapshot = poll(sessions, job_id, 0)
    assert snapshot is not None and snapshot.status["phase"] == "queued"
    run_as_worker(sessions, job_id)
    with session_scope(sessions) as session:
        store_jobs.heartbeat(
            session, job_id=job_id, worker_id="w1", lease_s=60, step=2, phase="evaluating"
        )
    snapshot = poll(sessions, job_id, 0)
    assert snapshot is not None and snapshot.status["phase"] == "evaluating"
    client.post(f"/v1/jobs/{job_id}/cancel", headers=account.headers)


# --- the dashboard and the docs ----------------------------------------------------------------


def test_dashboard_is_served_under_a_strict_csp(client: TestClient) -> None:
    for path in ("/", "/ui/app.js", "/ui/pages/job.js", "/ui/style.css", "/ui/vendor/plotly.min.js",
                 "/ui/vendor/plotly.css"):  # fmt: skip
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    assert '<script type="module" src="/ui/app.js">' in client.get("/").text
    assert client.get("/ui/vendor/plotly.min.js").text.startswith("/**\n* plotly.js v")
    assert (
        ".js-plotly-plot .plotly .main-svg{position:absolute"
        in client.get("/ui/vendor/plotly.css").text
    )
    assert client.get("/ui/../main.py").status_code == 404
    assert "/" not in json.dumps(client.get("/openapi.json").json()["paths"].get("/", {}))


def test_docs_load_their_assets_from_this_server(client: TestClient) -> None:
    for path, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        page = client.get(path).text
        assert f'src="/static-offline-docs/{asset}"' in page
        assert "cdn" not in page.lower() and "googleapis" not in page
        assert client.get(f"/static-offline-docs/{asset}").status_code == 200
        policy = client.get(path).headers["content-security-policy"]
        assert "default-src 'self'" in policy and "https:" not in policy
