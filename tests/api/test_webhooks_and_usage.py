"""Over HTTP on PostgreSQL: a submission's webhook (validated, shown without its secret), a job's
deliveries listed, an account's usage and its storage quota."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from store import webhooks
from tests.api.conftest import Account, assert_error, make_settings
from tests.api.test_datasets import npz_bytes, upload
from tests.api.test_jobs import TINY

HOOK = {"url": "https://hooks.example.com/ganforge", "secret": "s" * 24}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    ids: list[str] = []
    monkeypatch.setattr(webhooks, "send_committed", ids.extend)
    return ids


def submit(client: TestClient, account: Account, **fields: Any) -> Any:
    return client.post("/v1/jobs", headers=account.headers, json=TINY | fields)


def test_a_webhook_is_kept_with_its_job_and_its_secret_never_shown(
    client: TestClient, account: Account
) -> None:
    response = submit(client, account, webhook=HOOK | {"events": ["completed", "started"]})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["webhook"] == {
        "url": HOOK["url"],
        "events": ["completed", "started"],
        "signed": True,
    }
    assert "webhook" not in job["spec"]
    polled = client.get(f"/v1/jobs/{job['id']}", headers=account.headers)
    assert polled.json()["webhook"] == job["webhook"] and HOOK["secret"] not in polled.text
    unsigned = submit(client, account, webhook={"url": HOOK["url"]}).json()["webhook"]
    assert unsigned == {"url": HOOK["url"], "signed": False,
                        "events": ["started", "progress", "warning", "completed"]}  # fmt: skip
    assert submit(client, account).json()["webhook"] is None


@pytest.mark.parametrize(
    ("webhook", "param", "words"),
    [
        ({"url": "ftp://hooks.example.com/x"}, "webhook.url", "http or https"),
        ({"url": "https://user:pw@hooks.example.com/x"}, "webhook.url", "without credentials"),
        ({"url": "https://"}, "webhook.url", "with a host"),
        ({"url": "https://x.example.com:99999/"}, "webhook.url", "valid URL"),
        ({"url": "http://127.0.0.1:8080/x"}, "webhook.url", "loopback"),
        ({"url": "http://localhost/x"}, "webhook.url", "loopback"),
        ({"url": "http://10.0.0.7/x"}, "webhook.url", "non-public"),
        ({"url": "http://[::ffff:192.168.1.1]/x"}, "webhook.url", "non-public"),
        ({"url": "http://169.254.169.254/latest"}, "webhook.url", "non-public"),
        ({"url": HOOK["url"], "events": ["finished"]}, "webhook.events.0", None),
        ({"url": HOOK["url"], "events": []}, "webhook.events", None),
        ({"url": HOOK["url"], "secret": "short"}, "webhook.secret", None),
        ({"url": HOOK["url"], "retries": 3}, "webhook.retries", None),
        ("https://hooks.example.com", "webhook", None),
    ],
)
def test_a_bad_webhook_is_a_422_naming_its_field_and_nothing_is_stored(
    client: TestClient, account: Account, webhook: Any, param: str, words: str | None
) -> None:
    error = assert_error(submit(client, account, webhook=webhook), 422, param=param)
    if words:
        assert words in error["message"], error
    assert client.get("/v1/jobs", headers=account.headers).json()["data"] == []


def test_loopback_receivers_are_allowed_where_the_setting_says(
    tmp_path: Path, pg_url: str, account: Account
) -> None:
    settings = make_settings(tmp_path, pg_url, webhook_allowed_addresses="loopback")
    with TestClient(create_app(settings)) as client:
        ok = submit(client, account, webhook={"url": "http://127.0.0.1:8080/x"})
        assert ok.status_code == 202, ok.text
        private = submit(client, account, webhook={"url": "http://192.168.0.2/x"})
        assert_error(private, 422, "webhook_address_refused", "webhook.url")


def test_a_jobs_deliveries_are_listed_oldest_first_and_only_to_its_tenant(
    client: TestClient, account: Account, other: Account, sent: list[str]
) -> None:
    job = submit(client, account, webhook=HOOK | {"events": ["completed"]}).json()
    url = f"/v1/jobs/{job['id']}/webhook_deliveries"
    assert client.get(url, headers=account.headers).json() == {"data": [], "has_more": False}

    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=account.headers).status_code == 200

    page = client.get(url, headers=account.headers).json()
    [delivery] = page["data"]
    assert delivery["id"] == sent[0] and delivery["event"] == "completed"
    assert (delivery["status"], delivery["attempts"], delivery["url"]) == (
        "pending",
        [],
        HOOK["url"],
    )
    body = delivery["payload"]
    assert body["type"] == "job.completed" and body["job"]["status"] == "cancelled"
    assert body["id"] == delivery["id"] and set(body) == {
        "id",
        "type",
        "created_at",
        "job",
        "event",
    }
    assert_error(client.get(url, headers=other.headers), 404)
    after = client.get(url, headers=account.headers, params={"after": delivery["id"]}).json()
    assert after == {"data": [], "has_more": False}
    assert_error(
        client.get(url, headers=account.headers, params={"after": "whd_nope"}), 422, param="after"
    )


def test_usage_counts_stored_bytes_and_the_quota_refuses_more(
    tmp_path: Path, pg_url: str, account: Account
) -> None:
    images = np.zeros((4, 8, 8), dtype=np.uint8)
    with TestClient(create_app(make_settings(tmp_path, pg_url))) as client:
        empty = client.get("/v1/usage", headers=account.headers).json()
        assert empty == {"storage_bytes": {"datasets": 0, "samples": 0, "checkpoints": 0,
                                           "models": 0, "total": 0},
                         "storage_quota_bytes": None, "job_seconds": 0.0}  # fmt: skip
        dataset = upload(client, account, npz_bytes(images=images), "a.npz").json()
        usage = client.get("/v1/usage", headers=account.headers).json()
        assert usage["storage_bytes"]["datasets"] == dataset["size_bytes"] > 0
        assert usage["storage_bytes"]["total"] == dataset["size_bytes"]

    quota = dataset["size_bytes"]
    settings = make_settings(tmp_path, pg_url, max_storage_bytes_per_tenant=quota)
    with TestClient(create_app(settings)) as client:
        assert (
            client.get("/v1/usage", headers=account.headers).json()["storage_quota_bytes"] == quota
        )
        refused = upload(client, account, npz_bytes(images=images), "b.npz")
        assert_error(refused, 429, "quota_exceeded")
        assert_error(submit(client, account), 429, "quota_exceeded")
        assert len(client.get("/v1/datasets", headers=account.headers).json()["data"]) == 1
        assert (
            client.delete(f"/v1/datasets/{dataset['id']}", headers=account.headers).status_code
            == 204
        )
        assert submit(client, account).status_code == 202  # under the quota again


def test_an_accounts_default_webhook_goes_to_submissions_that_name_none(
    client: TestClient, account: Account, other: Account
) -> None:
    assert_error(client.get("/v1/webhook", headers=account.headers), 404)
    put = client.put("/v1/webhook", headers=account.headers, json=HOOK | {"events": ["completed"]})
    assert put.status_code == 200, put.text
    shown = {"url": HOOK["url"], "events": ["completed"], "signed": True}
    assert put.json() == shown
    assert client.get("/v1/webhook", headers=account.headers).json() == shown
    assert HOOK["secret"] not in client.get("/v1/webhook", headers=account.headers).text

    assert submit(client, account).json()["webhook"] == shown
    own = {"url": "https://elsewhere.example.com/h"}
    assert submit(client, account, webhook=own).json()["webhook"]["url"] == own["url"]
    assert submit(client, other).json()["webhook"] is None  # another account's default

    refused = client.put("/v1/webhook", headers=account.headers, json={"url": "http://10.0.0.1/"})
    assert_error(refused, 422, "webhook_address_refused", "url")
    assert_error(client.put("/v1/webhook", headers=account.headers, json={"url": "ftp://x"}), 422,
                 param="url")  # fmt: skip
    assert client.get("/v1/webhook", headers=account.headers).json() == shown  # unchanged
    assert client.delete("/v1/webhook", headers=account.headers).status_code == 204
    assert submit(client, account).json()["webhook"] is None
