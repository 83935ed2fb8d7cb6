"""Schemathesis over the OpenAPI document, against the real app on PostgreSQL: no answer is a 5xx,
every status is one the document lists, and every body matches its documented schema.

Bounded: ``GANFORGE_FUZZ_EXAMPLES`` cases an operation (hypothesis, no deadline) and a pytest
timeout. Requests carry a valid API key, so generated data reaches past authentication. (Each
operation is its own test, built from the document's operations; schemathesis' lazy-fixture mode
does not run under pytest 9.)
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.config import ApiSettings
from api.main import create_app
from tests.api.conftest import Account, Publish

FUZZ_EXAMPLES = int(os.environ.get("GANFORGE_FUZZ_EXAMPLES", "20"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def documented_cases() -> list[tuple[str, str, GenerationMode]]:
    """(METHOD, path, mode) for every operation in the document (read from an app that connects
    to nothing); negative cases only where there is an input to break."""
    settings = ApiSettings(
        data_dir=Path("/nonexistent"), database_url="sqlite://", storage_url="file:///nonexistent"
    )
    cases = []
    for path, item in create_app(settings).openapi()["paths"].items():
        for method, operation in item.items():
            inputs = operation.get("parameters") or operation.get("requestBody")
            for mode in GenerationMode if inputs else [GenerationMode.POSITIVE]:
                cases.append((method.upper(), path, mode))
    return cases


@pytest.fixture
def real_ids(client: TestClient, account: Account, publish: Publish) -> dict[str, str]:
    """Objects that exist, so that positive cases reach past the 404: a model, its job (with its
    event log) and an uploaded dataset."""
    model_id = publish(account)
    job_id = client.get(f"/v1/models/{model_id}", headers=account.headers).json()["job_id"]
    pack = io.BytesIO()
    np.savez(pack, images=np.zeros((4, 8, 8), np.uint8), labels=np.arange(4) % 2)
    upload = client.post(
        "/v1/datasets", headers=account.headers, files={"file": ("d.npz", pack.getvalue())}
    )
    assert upload.status_code == 201, upload.text
    return {"model_id": model_id, "job_id": job_id, "dataset_id": upload.json()["id"], "step": "4"}


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("method", "path", "mode"), documented_cases())
def test_no_5xx_and_every_answer_is_documented(
    app: FastAPI,
    account: Account,
    real_ids: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    """Positive cases follow the document, on objects that exist; negative ones break it."""
    operation = schemathesis.openapi.from_asgi("/openapi.json", app)[path][method]
    names = {p["name"] for p in app.openapi()["paths"][path][method.lower()].get("parameters", [])}
    known = {k: v for k, v in real_ids.items() if k in names}
    fixed = known if mode is GenerationMode.POSITIVE and known else None
    calls: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers=account.headers, checks=CHECKS)
        calls.append(response.status_code)

    check()
    assert calls, "no case was generated"
    refused = [r.getMessage() for r in caplog.records if "database refused" in r.getMessage()]
    assert not refused, f"a value reached the database unvalidated: {refused[0][:300]}"
