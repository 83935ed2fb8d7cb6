from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from gan_engine.artifacts import CONFIG_FILE, WEIGHTS_FILE, GeneratorArtifact
from store.storage import ObjectStorage, model_weights_key
from tests.api.conftest import Account, Publish, assert_error


def sample(client: TestClient, account: Account, model_id: str, **body: Any) -> Any:
    return client.post(f"/v1/models/{model_id}/samples", headers=account.headers, json=body)


def grid_of(response: Any) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def npy_of(response: Any) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    return np.load(io.BytesIO(response.content), allow_pickle=False)


def test_list_and_get(
    client: TestClient, account: Account, other: Account, publish: Publish
) -> None:
    first, second = publish(account), publish(account, "ring8")
    page = client.get("/v1/models", headers=account.headers).json()
    assert [m["id"] for m in page["data"]] == [second, first] and not page["has_more"]
    body = client.get(f"/v1/models/{first}", headers=account.headers).json()
    assert body["class_names"] == [str(k) for k in range(10)] and body["num_classes"] == 10
    assert body["image_shape"] == [8, 8, 1] and body["summary_metrics"] == {"fid": 3.5}
    assert body["spec"]["model"]["conditioning"] == "concat"
    job = client.get(f"/v1/jobs/{body['job_id']}", headers=account.headers).json()
    assert job["status"] == "succeeded" and job["model_id"] == first
    ring = client.get(f"/v1/models/{second}", headers=account.headers).json()
    assert ring["class_names"] is None and ring["num_classes"] == 0
    assert client.get("/v1/models?limit=1", headers=account.headers).json()["has_more"] is True
    assert client.get("/v1/models", headers=other.headers).json()["data"] == []


def test_samples_by_labels_class_names_and_per_class(
    client: TestClient, account: Account, publish: Publish
) -> None:
    model_id = publish(account)
    by_label = npy_of(sample(client, account, model_id, labels=[7, 7, 3], format="npy"))
    assert by_label.shape == (3, 8, 8) and by_label.dtype == np.uint8
    by_name = npy_of(sample(client, account, model_id, class_names=["7", "7", "3"], format="npy"))
    assert np.array_equal(by_label, by_name)
    repeated = npy_of(sample(client, account, model_id, class_names=["7"], n=5, format="npy"))
    assert repeated.shape == (5, 8, 8) and np.array_equal(repeated[:2], by_label[:2])
    per_class = npy_of(sample(client, account, model_id, per_class=2, format="npy"))
    assert per_class.shape == (20, 8, 8)
    grid = grid_of(sample(client, account, model_id, per_class=2))
    assert grid.shape == (10 * 10 + 2, 2 * 10 + 2)  # one row per class, 2 columns, 2 px padding
    default = npy_of(sample(client, account, model_id, format="npy"))
    assert default.shape == (16, 8, 8)


def test_cbn_model_samples_a_class_and_walks_between_classes(
    client: TestClient, account: Account, publish: Publish
) -> None:
    model_id = publish(account, "digits-cbn")
    body = client.get(f"/v1/models/{model_id}", headers=account.headers).json()
    assert body["spec"]["model"]["g_conditioning"] == "cbn"
    sevens = npy_of(sample(client, account, model_id, class_names=["7"], n=1, seed=4, format="npy"))
    ones = npy_of(sample(client, account, model_id, class_names=["1"], n=1, seed=4, format="npy"))
    assert sevens.shape == ones.shape == (1, 8, 8)
    walk = client.post(
        f"/v1/models/{model_id}/interpolations",
        headers=account.headers,
        json={"from_seed": 4, "from_class": "7", "to_class": "1", "frames": 3, "format": "npy"},
    )
    frames = npy_of(walk)
    assert np.array_equal(frames[0], sevens[0]) and np.array_equal(frames[-1], ones[0])


def test_same_seed_same_bytes_other_seed_other_bytes(
    client: TestClient, account: Account, publish: Publish
) -> None:
    model_id = publish(account)
    for fmt in ("png_grid", "png_zip", "npy", "json"):
        first = sample(client, account, model_id, labels=[1, 2, 3], seed=5, format=fmt)
        again = sample(client, account, model_id, labels=[1, 2, 3], seed=5, format=fmt)
        other = sample(client, account, model_id, labels=[1, 2, 3], seed=6, format=fmt)
        assert first.status_code == 200 and first.content == again.content, fmt
        assert first.content != other.content, fmt
    truncated = sample(
        client, account, model_id, labels=[1, 2, 3], seed=5, truncation=0.5, format="npy"
    )
    assert (
        truncated.content
        != sample(client, account, model_id, labels=[1, 2, 3], seed=5, format="npy").content
    )


def test_png_zip_and_json_formats(client: TestClient, account: Account, publish: Publish) -> None:
    model_id = publish(account)
    response = sample(client, account, model_id, labels=[0, 9], format="png_zip")
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.namelist() == ["0000_0.png", "0001_9.png"]
        image = np.asarray(Image.open(io.BytesIO(archive.read("0001_9.png"))))
    images = npy_of(sample(client, account, model_id, labels=[0, 9], format="npy"))
    assert np.array_equal(image, images[1])
    body = sample(client, account, model_id, labels=[0, 9], format="json").json()
    assert (
        body["labels"] == [0, 9]
        and body["class_names"] == ["0", "9"]
        and body["shape"] == [2, 8, 8]
    )
    assert np.array_equal(np.array(body["samples"], dtype=np.uint8), images)


def test_points_model(client: TestClient, account: Account, publish: Publish) -> None:
    model_id = publish(account, "ring8")
    points = npy_of(sample(client, account, model_id, n=32, format="npy"))
    assert points.shape == (32, 2) and points.dtype == np.float32
    body = sample(client, account, model_id, n=32, format="json").json()
    assert body["labels"] is None and body["class_names"] is None and body["shape"] == [32, 2]
    assert np.array_equal(np.array(body["samples"], dtype=np.float32), points)
    assert grid_of(sample(client, account, model_id, n=32)).ndim == 3  # a scatter plot
    assert_error(sample(client, account, model_id, n=3, format="png_zip"), 422, param="format")
    assert_error(sample(client, account, model_id, labels=[1]), 422, param="labels")


def test_several_class_names_with_n_share_it_equally(
    client: TestClient, account: Account, publish: Publish
) -> None:
    """{"class_names": ["Sneaker", "Bag", "Trouser"], "n": 6} is two of each, in blocks."""
    model_id = publish(account)
    body = {"class_names": ["7", "2", "5"], "n": 6, "seed": 3, "format": "json"}
    answer = sample(client, account, model_id, **body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["class_names"] == ["7", "7", "2", "2", "5", "5"]
    grid = grid_of(sample(client, account, model_id, **(body | {"format": "png_grid"})))
    assert grid.shape[:2] == (3 * 10 + 2, 2 * 10 + 2)  # one row of two per class


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"class_names": ["Sneaker"]}, "class_names"),
        ({"labels": [10]}, "labels"),
        ({"labels": [1, 2], "n": 3}, "n"),
        ({"n": 1025}, "n"),
        ({"per_class": 103}, "per_class"),
        ({"n": 0}, "n"),
        ({"format": "gif"}, "format"),
        ({"truncation": 0}, "truncation"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"n": 4.0}, "n"),
        ({"labels": [1, 2], "class_names": ["3"]}, "class_names"),
        ({"class_names": ["1", "2", "3"], "n": 7}, "n"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_sampling_requests_are_422(
    client: TestClient, account: Account, publish: Publish, body: dict[str, Any], param: str
) -> None:
    model_id = publish(account)
    assert_error(sample(client, account, model_id, **body), 422, param=param)


def test_export(client: TestClient, account: Account, publish: Publish) -> None:
    model_id = publish(account)
    response = client.get(
        f"/v1/models/{model_id}/export?format=safetensors", headers=account.headers
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert model_id in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == [
            "config.json", "discriminator.safetensors", "generator.safetensors", "spec.json"
        ]  # fmt: skip
        artifact = GeneratorArtifact.from_bytes(  # sampled as the service does (its default)
            archive.read(WEIGHTS_FILE), archive.read(CONFIG_FILE), precision="auto"
        )
        assert json.loads(archive.read("spec.json"))["model"]["conditioning"] == "concat"
    exported = artifact.sample(labels=[4, 5], seed=2).data
    served = npy_of(sample(client, account, model_id, labels=[4, 5], seed=2, format="npy"))
    assert np.array_equal(exported, served)
    assert client.get(f"/v1/models/{model_id}/export", headers=account.headers).status_code == 200
    assert_error(
        client.get(f"/v1/models/{model_id}/export?format=onnx", headers=account.headers),
        422,
        param="format",
    )


def test_another_tenant_gets_404(
    client: TestClient, account: Account, other: Account, publish: Publish
) -> None:
    model_id = publish(account)
    assert_error(client.get(f"/v1/models/{model_id}", headers=other.headers), 404, "not_found")
    assert_error(sample(client, other, model_id, n=1), 404, "not_found")
    assert_error(
        client.get(f"/v1/models/{model_id}/export", headers=other.headers), 404, "not_found"
    )


def test_generators_are_cached(
    client: TestClient, account: Account, publish: Publish, app: Any, storage: ObjectStorage
) -> None:
    model_id = publish(account)
    assert model_id not in app.state.model_cache
    first = sample(client, account, model_id, labels=[3], format="npy").content
    assert model_id in app.state.model_cache
    storage.delete(model_weights_key(model_id))  # served from memory from now on
    assert sample(client, account, model_id, labels=[3], format="npy").content == first
    metrics = client.get("/metrics").text
    assert 'ganforge_generation_duration_seconds_count{format="npy"} 2.0' in metrics


def test_a_damaged_stored_model_is_our_fault_not_the_client_s(
    client: TestClient, account: Account, publish: Publish, storage: ObjectStorage
) -> None:
    model_id = publish(account)
    storage.put_bytes(model_weights_key(model_id), b"not safetensors")
    error = assert_error(sample(client, account, model_id, n=1), 500, "model_unreadable")
    assert model_id in error["message"] and "our side" in error["message"]
