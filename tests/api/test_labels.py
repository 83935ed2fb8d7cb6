"""Names, tags and metadata on jobs and models: set on create, changed with PATCH, filtered with
?tag=, on PostgreSQL."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from store import jobs as store_jobs
from store.db import session_scope
from store.labels import MAX_METADATA_KEYS
from tests.api.conftest import Account, assert_error
from tests.api.test_datasets import npz_bytes
from tests.api.test_jobs import TINY


def submit(client: TestClient, account: Account, **labels: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs", headers=account.headers, json=TINY | labels)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_job_is_submitted_with_its_labels_and_the_spec_stays_the_spec(
    client: TestClient, account: Account
) -> None:
    job = submit(client, account, name="sneakers v2", tags=["shoes", "v2", "shoes"],
                 metadata={"owner": "ana", "ticket": "ML-12"})  # fmt: skip

    assert (job["name"], job["tags"]) == ("sneakers v2", ["shoes", "v2"])  # each tag once
    assert job["metadata"] == {"owner": "ana", "ticket": "ML-12"}
    assert not {"name", "tags", "metadata"} & set(job["spec"])
    polled = client.get(f"/v1/jobs/{job['id']}", headers=account.headers).json()  # the fast path
    assert (polled["name"], polled["tags"], polled["metadata"]) == (
        job["name"], job["tags"], job["metadata"],
    )  # fmt: skip
    plain = submit(client, account)
    assert (plain["name"], plain["tags"], plain["metadata"]) == (None, [], {})


def test_bad_labels_are_a_422_naming_the_field(client: TestClient, account: Account) -> None:
    cases = [
        ({"tags": ["no spaces"]}, "tags.0"),
        ({"tags": ["t"] * 21}, "tags"),
        ({"tags": "shoes"}, "tags"),
        ({"name": ""}, "name"),
        ({"name": "bell\x07"}, "name"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"metadata": {"k": "v" * 501}}, "metadata.k"),
        ({"metadata": {f"k{i}": "v" for i in range(MAX_METADATA_KEYS + 1)}}, "metadata"),
    ]
    for labels, param in cases:
        response = client.post("/v1/jobs", headers=account.headers, json=TINY | labels)
        assert_error(response, 422, "invalid_spec", param=param)
    assert client.get("/v1/jobs", headers=account.headers).json()["data"] == []


def test_lists_filter_by_every_tag_given(
    client: TestClient, account: Account, other: Account
) -> None:
    both = submit(client, account, tags=["a", "b"])["id"]
    only_a = submit(client, account, tags=["a"])["id"]
    submit(client, account)
    submit(client, other, tags=["a", "b"])

    def listed(*tags: str) -> list[str]:
        response = client.get("/v1/jobs", headers=account.headers, params={"tag": list(tags)})
        assert response.status_code == 200, response.text
        return [job["id"] for job in response.json()["data"]]

    assert listed("a") == [only_a, both]
    assert listed("a", "b") == [both]
    assert listed("c") == []
    assert len(listed()) == 3
    bad = client.get("/v1/jobs", headers=account.headers, params={"tag": "a b"})
    assert_error(bad, 422, param="tag.0")


def test_patch_renames_replaces_tags_and_merges_metadata(
    client: TestClient, account: Account, other: Account
) -> None:
    job = submit(client, account, name="first", tags=["x"], metadata={"a": "1", "b": "2"})
    url = f"/v1/jobs/{job['id']}"

    change = {"tags": ["y", "z"], "metadata": {"b": None, "c": "3"}}
    patched = client.patch(url, headers=account.headers, json=change)
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["name"], body["tags"], body["metadata"]) == (
        "first",
        ["y", "z"],
        {"a": "1", "c": "3"},
    )
    cleared = client.patch(url, headers=account.headers, json={"name": None}).json()
    assert cleared["name"] is None and cleared["tags"] == ["y", "z"]
    assert (
        client.patch(url, headers=account.headers, json={}).json()["metadata"] == body["metadata"]
    )
    assert cleared["spec"] == job["spec"]

    assert_error(client.patch(url, headers=account.headers, json={"spec": {}}), 422)
    too_many = {f"k{i}": "v" for i in range(MAX_METADATA_KEYS - 1)}
    assert_error(client.patch(url, headers=account.headers, json={"metadata": too_many}), 422,
                 param="metadata")  # fmt: skip
    assert_error(client.patch(url, headers=other.headers, json={"name": "mine"}), 404)
    assert client.get(url, headers=account.headers).json()["name"] is None


def test_a_model_starts_with_its_jobs_labels_and_is_patched_alone(
    client: TestClient, account: Account, sessions: sessionmaker[Session]
) -> None:
    job = submit(client, account, name="digits", tags=["small"], metadata={"run": "7"})
    with session_scope(sessions) as session:
        store_jobs.claim_job(session, job_id=job["id"], worker_id="w", lease_s=60)
        model = store_jobs.succeed_job(
            session, job_id=job["id"], worker_id="w", model_id=None, class_names=None,
            image_shape=[8, 8, 1], summary=None, step=4,
        )  # fmt: skip
        assert model is not None
        model_id = model.id
    got = client.get(f"/v1/models/{model_id}", headers=account.headers).json()
    assert (got["name"], got["tags"], got["metadata"]) == ("digits", ["small"], {"run": "7"})

    client.patch(f"/v1/models/{model_id}", headers=account.headers, json={"tags": ["best"]})

    models = client.get("/v1/models", headers=account.headers, params={"tag": "best"}).json()
    assert [m["id"] for m in models["data"]] == [model_id]
    assert client.get(f"/v1/jobs/{job['id']}", headers=account.headers).json()["tags"] == ["small"]


def test_a_dataset_is_uploaded_with_tags_and_metadata_patched_and_filtered(
    client: TestClient, account: Account, other: Account
) -> None:
    response = upload_with(client, account, {"name": "scans", "tags": "shoes, v2",
                                              "metadata": '{"source": "scan-2"}'})  # fmt: skip
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert (dataset["name"], dataset["tags"], dataset["metadata"]) == (
        "scans", ["shoes", "v2"], {"source": "scan-2"},
    )  # fmt: skip
    plain = upload_with(client, account, {}).json()
    assert (plain["tags"], plain["metadata"]) == ([], {})

    url = f"/v1/datasets/{dataset['id']}"
    patched = client.patch(
        url, headers=account.headers, json={"tags": ["v3"], "metadata": {"source": None}}
    )
    assert (patched.json()["tags"], patched.json()["metadata"]) == (["v3"], {})
    assert_error(client.patch(url, headers=account.headers, json={"name": None}), 422, param="name")
    assert_error(client.patch(url, headers=other.headers, json={"tags": []}), 404)
    listed = client.get("/v1/datasets", headers=account.headers, params={"tag": "v3"}).json()
    assert [d["id"] for d in listed["data"]] == [dataset["id"]]


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"tags": "no spaces"}, "tags.0"), ({"metadata": "[1]"}, "metadata"),
     ({"metadata": "{not json"}, "metadata"), ({"metadata": '{"k": 1}'}, "metadata.k")],
)  # fmt: skip
def test_bad_upload_labels_are_a_422_and_store_nothing(
    client: TestClient, account: Account, fields: dict[str, str], param: str
) -> None:
    assert_error(upload_with(client, account, fields), 422, param=param)
    assert client.get("/v1/datasets", headers=account.headers).json()["data"] == []


def upload_with(client: TestClient, account: Account, form: dict[str, str]) -> Any:
    data = npz_bytes(images=np.zeros((4, 8, 8), dtype=np.uint8))
    return client.post(
        "/v1/datasets", headers=account.headers, files={"file": ("a.npz", data)}, data=form
    )
