from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from tests.api.conftest import Account, assert_error, make_settings


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_broker_and_storage(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "broker": "ok", "storage": "ok"},
    }


def test_readyz_names_what_failed(
    client: TestClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable() -> None:
        raise ConnectionError("storage is down")

    monkeypatch.setattr(app.state.storage, "check", unreachable)
    app.state.head_revision = "9999_future"
    response = client.get("/readyz")
    error = assert_error(response, 503, "not_ready")
    assert "database" in error["message"] and "storage" in error["message"]
    checks = response.json()["checks"]
    assert checks["broker"] == "ok"
    assert "9999_future" in checks["database"] and "storage is down" in checks["storage"]


def test_readyz_with_an_unreachable_broker(tmp_path: Path, pg_url: str) -> None:
    settings = make_settings(tmp_path, pg_url, broker_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert_error(response, 503, "not_ready")
    assert response.json()["checks"]["broker"] != "ok"


def test_metrics_count_requests_by_route_template_and_jobs_by_status(
    client: TestClient, account: Account
) -> None:
    spec = {"dataset": {"builtin": "digits"}, "model": {"image_size": 8}, "training": {"steps": 2}}
    job = client.post("/v1/jobs", headers=account.headers, json=spec).json()
    client.get(f"/v1/jobs/{job['id']}", headers=account.headers)
    client.get("/v1/jobs/job_unknown", headers=account.headers)
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert 'ganforge_http_requests_total{method="POST",route="/v1/jobs",status="202"} 1.0' in text
    assert 'route="/v1/jobs/{job_id}",status="200"} 1.0' in text
    assert 'route="/v1/jobs/{job_id}",status="404"} 1.0' in text
    assert 'route="<unmatched>",status="404"} 1.0' in text
    assert "job_unknown" not in text
    assert (
        'ganforge_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/jobs"}'
        in text
    )
    assert (
        'ganforge_jobs{status="queued"}' in text and 'ganforge_jobs{status="interrupted"}' in text
    )


def test_an_unexpected_error_is_a_500_envelope(app: FastAPI) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail")

    with TestClient(app, raise_server_exceptions=False) as client:
        error = assert_error(client.get("/boom"), 500, "internal_error")
    assert "secret" not in error["message"]


def test_a_backing_service_failure_is_a_503_with_retry_after(app: FastAPI) -> None:
    from botocore.exceptions import EndpointConnectionError
    from sqlalchemy.exc import OperationalError

    @app.get("/storage-down")
    def storage_down() -> None:
        raise EndpointConnectionError(endpoint_url="http://minio:9000")

    @app.get("/database-down")
    def database_down() -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("password=secret"))

    with TestClient(app, raise_server_exceptions=False) as client:
        for path, what in (("/storage-down", "object storage"), ("/database-down", "database")):
            response = client.get(path)
            error = assert_error(response, 503, "unavailable")
            assert what in error["message"] and "secret" not in error["message"]
            assert response.headers["Retry-After"] == "5"


def test_openapi_documents_the_spec_and_every_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"Spec", "ModelSpec", "DatasetSpec"} <= set(schema["components"]["schemas"])
    body = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/Spec"
    upload = schema["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    assert set(schema["paths"]) >= {
        "/v1/datasets",
        "/v1/datasets/{dataset_id}",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/events",
        "/v1/jobs/{job_id}/metrics",
        "/v1/jobs/{job_id}/samples",
        "/v1/jobs/{job_id}/samples/{step}.png",
        "/v1/jobs/{job_id}/checkpoints",
        "/v1/jobs/{job_id}/stream",
        "/v1/models",
        "/v1/models/{model_id}",
        "/v1/models/{model_id}/samples",
        "/v1/models/{model_id}/export",
        "/healthz",
        "/readyz",
        "/metrics",
    }


def test_module_level_app_is_built_from_the_environment(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.main
    from api.config import get_api_settings

    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("REAPER_ENABLED", "false")
    monkeypatch.setattr(api.main, "_default_app", None)
    get_api_settings.cache_clear()
    try:
        app = api.main.app
        assert app.state.settings.database_url == pg_url and not app.state.settings.reaper_enabled
        assert api.main.app is app
    finally:
        get_api_settings.cache_clear()
