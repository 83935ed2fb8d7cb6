"""A trained generator's applications over HTTP: latent walks and synthetic datasets."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from api.main import create_app
from gan_engine.data.packs import read_pack
from store.storage import ObjectStorage, dataset_pack_key
from tests.api.conftest import Account, Publish, assert_error, make_settings


def walk(client: TestClient, account: Account, model_id: str, **body: Any) -> Any:
    return client.post(f"/v1/models/{model_id}/interpolations", headers=account.headers, json=body)


def materialise(client: TestClient, account: Account, model_id: str, **body: Any) -> Any:
    return client.post(f"/v1/models/{model_id}/datasets", headers=account.headers, json=body)


def samples_npy(client: TestClient, account: Account, model_id: str, **body: Any) -> np.ndarray:
    response = client.post(
        f"/v1/models/{model_id}/samples", headers=account.headers, json={**body, "format": "npy"}
    )
    assert response.status_code == 200, response.text
    return np.load(io.BytesIO(response.content))


def test_seed_and_class_walks_in_every_format(
    client: TestClient, account: Account, publish: Publish
) -> None:
    model_id = publish(account)
    strip = walk(client, account, model_id, from_seed=3, to_seed=4, from_class="7", frames=5)
    assert strip.status_code == 200 and strip.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(strip.content)).size == (5 * 10 + 2, 12)
    again = walk(client, account, model_id, from_seed=3, to_seed=4, from_class="7", frames=5)
    assert again.content == strip.content
    frames = np.load(io.BytesIO(walk(client, account, model_id, from_seed=3, to_seed=4,
                                     from_class=7, frames=5, format="npy").content))  # fmt: skip
    assert frames.shape == (5, 8, 8) and frames.dtype == np.uint8
    first = samples_npy(client, account, model_id, labels=[7], n=1, seed=3)
    assert np.array_equal(frames[0], first[0])  # a name and an index are the same class
    gif = walk(client, account, model_id, from_seed=2, from_class=1, to_class="9", format="gif")
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
    assert Image.open(io.BytesIO(gif.content)).n_frames == 14  # 8 frames there and back
    classes = np.load(io.BytesIO(walk(client, account, model_id, from_seed=2, from_class=1,
                                      to_class=9, format="npy").content))  # fmt: skip
    assert np.array_equal(classes[-1], samples_npy(client, account, model_id, labels=[9], n=1,
                                                   seed=2)[0])  # fmt: skip


def test_walk_bounds_wrong_kinds_and_tenancy(
    client: TestClient, account: Account, other: Account, publish: Publish
) -> None:
    digits, ring = publish(account), publish(account, "ring8")
    assert_error(walk(client, account, digits, to_seed=1, frames=65), 422, param="frames")
    assert_error(walk(client, account, digits, to_seed=1, frames=1), 422, param="frames")
    assert_error(walk(client, account, digits, from_seed=1), 422, param="to_seed")
    assert_error(walk(client, account, digits, to_class="Sneaker"), 422, param="to_class")
    assert_error(walk(client, account, digits, to_seed=1, format="mp4"), 422, param="format")
    assert_error(walk(client, account, digits, to_seed=1, speed=2), 422)
    error = assert_error(walk(client, account, ring, to_seed=1), 422, "wrong_model_kind", "format")
    assert "npy" in error["message"]
    points = walk(client, account, ring, to_seed=1, frames=3, format="npy")
    assert np.load(io.BytesIO(points.content)).shape == (3, 2)
    unconditional = walk(client, account, ring, to_class=1, format="npy")
    assert_error(unconditional, 422, "wrong_model_kind", "to_class")
    assert_error(walk(client, other, digits, to_seed=1), 404)
    assert_error(walk(client, account, "mdl_missing", to_seed=1), 404)


def test_a_synthetic_dataset_is_a_normal_dataset(
    client: TestClient, account: Account, other: Account, publish: Publish, storage: ObjectStorage
) -> None:
    model_id = publish(account)
    response = materialise(client, account, model_id, per_class=3, seed=5, tags=["synthetic"],
                           metadata={"purpose": "augment"})  # fmt: skip
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["n_images"] == 30 and dataset["image_shape"] == [8, 8, 1]
    assert dataset["class_names"] == [str(k) for k in range(10)]
    assert dataset["class_counts"] == [3] * 10 and dataset["name"] == f"{model_id}-synthetic"
    assert dataset["tags"] == ["synthetic"]
    assert dataset["metadata"] == {"source_model": model_id, "seed": "5", "truncation": "none",
                                   "purpose": "augment"}  # fmt: skip
    listed = client.get("/v1/datasets", headers=account.headers).json()["data"]
    assert [d["id"] for d in listed] == [dataset["id"]]
    assert client.get("/v1/datasets", headers=other.headers).json()["data"] == []
    pack = read_pack(io.BytesIO(storage.get_bytes(dataset_pack_key(dataset["id"]))))
    expected = samples_npy(client, account, model_id, per_class=3, seed=5)  # the same images
    assert np.array_equal(pack.images[:, 0], expected) and pack.labels is not None
    assert pack.labels.tolist() == [k for k in range(10) for _ in range(3)]
    spec = {
        "dataset": {"id": dataset["id"]},
        "model": {"image_size": 8, "width": 8, "latent_dim": 16, "conditioning": "concat"},
        "training": {"steps": 4, "batch_size": 16},
    }
    job = client.post("/v1/jobs", headers=account.headers, json=spec)
    assert job.status_code == 202, job.text
    assert job.json()["dataset_id"] == dataset["id"]
    client.post(f"/v1/jobs/{job.json()['id']}/cancel", headers=account.headers)
    named = materialise(client, account, model_id, per_class=1, name="digits x1", truncation=0.5)
    assert named.json()["name"] == "digits x1" and named.json()["metadata"]["truncation"] == "0.5"
    deleted = client.delete(f"/v1/datasets/{named.json()['id']}", headers=account.headers)
    assert deleted.status_code == 204
    assert_error(materialise(client, other, model_id, per_class=1), 404)


def test_synthetic_dataset_bounds_kinds_and_quota(
    tmp_path: Path, pg_url: str, client: TestClient, account: Account, publish: Publish
) -> None:
    digits, ring = publish(account), publish(account, "ring8")
    assert_error(materialise(client, account, digits), 422, param="per_class")
    assert_error(materialise(client, account, digits, per_class=0), 422, param="per_class")
    too_many = materialise(client, account, digits, per_class=1001)  # 10,010 > 10,000
    assert "per_class 1000 or less" in assert_error(too_many, 413, param="per_class")["message"]
    assert_error(materialise(client, account, ring, per_class=2), 422, "wrong_model_kind")
    assert materialise(client, account, digits, per_class=1).status_code == 201
    full = make_settings(tmp_path, pg_url, max_storage_bytes_per_tenant=1)
    with TestClient(create_app(full)) as quota_client:
        assert_error(materialise(quota_client, account, digits, per_class=1), 429, "quota_exceeded")
