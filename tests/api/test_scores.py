"""``POST /v1/models/{id}/scores`` over HTTP: images in, anomaly scores out."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.config import ApiSettings
from gan_engine.data import load_dataset
from gan_engine.spec import DatasetSpec
from tests.api.conftest import Account, Publish, assert_error, make_settings

MAX_IMAGES = 12
FAST = {"steps": "10", "starts": "2", "seed": "5"}


@pytest.fixture
def settings(tmp_path: Path, pg_url: str) -> ApiSettings:
    return make_settings(tmp_path, pg_url, max_score_images=MAX_IMAGES, max_score_upload_bytes=8192)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """Test-split 8×8 digits as uploads carry them: uint8 (N, H, W), and their labels."""
    test = load_dataset(DatasetSpec(builtin="digits", split="test"))
    assert test.labels is not None
    return test.data[:, 0].numpy(), test.labels.numpy()


def npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def scores(
    client: TestClient,
    account: Account,
    model_id: str,
    body: bytes,
    filename: str = "images.npz",
    **fields: str,
) -> Any:
    return client.post(
        f"/v1/models/{model_id}/scores",
        headers=account.headers,
        files={"file": (filename, body)},
        data=fields,
    )


def test_both_scores_one_per_image_the_same_each_time(
    client: TestClient, account: Account, publish: Publish, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    model_id = publish(account)
    images = digits[0][:6]
    response = scores(client, account, model_id, npz(images=images), **FAST)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_id"] == model_id and body["count"] == 6 and body["labels"] is None
    assert set(body["scores"]) == {"discriminator", "reconstruction"}
    assert all(len(v) == 6 and all(np.isfinite(v)) for v in body["scores"].values())
    assert body["search"] == {"seed": 5, "steps": 10, "starts": 2, "distance": "l1",
                              "feature_weight": 0.0}  # fmt: skip
    again = scores(client, account, model_id, npz(images=images), **FAST).json()
    assert again["scores"] == body["scores"]
    only_d = scores(client, account, model_id, npz(images=images), method="discriminator")
    assert only_d.json()["scores"] == {"discriminator": body["scores"]["discriminator"]}
    assert only_d.json()["search"] is None


def test_labels_choose_the_class_of_a_conditional_model(
    client: TestClient, account: Account, publish: Publish, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    model_id = publish(account)
    images, labels = digits[0][:4], digits[1][:4]
    given = scores(client, account, model_id, npz(images=images, labels=labels),
                   method="discriminator").json()  # fmt: skip
    assert given["labels"] == labels.tolist()
    best = scores(client, account, model_id, npz(images=images), method="discriminator").json()
    # the best class is the one D finds most real: never a higher score than the given class
    pairs = zip(best["scores"]["discriminator"], given["scores"]["discriminator"], strict=True)
    assert all(b <= g + 1e-5 for b, g in pairs)
    named = npz(images=images, labels=np.zeros(4, np.int64), class_names=np.array(["nine"]))
    assert_error(scores(client, account, model_id, named), 422, "invalid_scoring_request")


def test_a_zip_of_pngs_in_class_folders(
    client: TestClient, account: Account, publish: Publish, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    model_id = publish(account)
    images, labels = digits[0][:3], digits[1][:3]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for k, (image, label) in enumerate(zip(images, labels, strict=True)):
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            archive.writestr(f"{label}/{k}.png", png.getvalue())
    response = scores(client, account, model_id, buffer.getvalue(), "digits.zip",
                      method="discriminator")  # fmt: skip
    assert response.status_code == 200, response.text
    by_npz = scores(client, account, model_id, npz(images=images, labels=labels),
                    method="discriminator").json()  # fmt: skip
    # the zip's images come sorted by folder, then name
    order = sorted(range(3), key=lambda k: (str(labels[k]), f"{k}.png"))
    assert response.json()["labels"] == [int(labels[k]) for k in order]
    expected = [by_npz["scores"]["discriminator"][k] for k in order]
    np.testing.assert_allclose(response.json()["scores"]["discriminator"], expected, rtol=1e-5)


def test_another_tenants_model_is_not_found(
    client: TestClient, account: Account, other: Account, publish: Publish,
    digits: tuple[np.ndarray, np.ndarray],
) -> None:  # fmt: skip
    model_id = publish(account)
    body = npz(images=digits[0][:2])
    assert_error(scores(client, other, model_id, body), 404, "not_found")
    assert_error(scores(client, account, "mdl_missing", body), 404)
    response = client.post(f"/v1/models/{model_id}/scores", files={"file": ("a.npz", body)})
    assert response.status_code == 401


def test_a_model_without_discriminator_has_only_reconstruction(
    client: TestClient, account: Account, publish: Publish, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    model_id = publish(account, discriminator=False)
    body = npz(images=digits[0][:2])
    for fields in (
        {},
        {"method": "discriminator"},
        {"method": "reconstruction", "feature_weight": "0.5"},
    ):
        assert_error(scores(client, account, model_id, body, **fields), 409, "no_discriminator")
    response = scores(client, account, model_id, body, method="reconstruction", **FAST)
    assert response.status_code == 200, response.text
    assert list(response.json()["scores"]) == ["reconstruction"]


def test_a_points_model_cannot_score(
    client: TestClient, account: Account, publish: Publish, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    model_id = publish(account, "ring8")
    response = scores(client, account, model_id, npz(images=digits[0][:2]))
    assert_error(response, 409, "model_cannot_score")


@pytest.mark.parametrize(
    ("images", "status", "code"),
    [
        (np.zeros((2, 9, 9), np.uint8), 422, "invalid_scoring_request"),  # not the model's shape
        (np.zeros((2, 8, 8, 3), np.uint8), 422, "invalid_scoring_request"),  # colour, model grey
        (np.zeros((MAX_IMAGES + 1, 8, 8), np.uint8), 413, "payload_too_large"),
        (np.zeros((2, 8, 8), np.float32), 422, "invalid_dataset"),  # not uint8
    ],
)
def test_images_of_the_wrong_shape_kind_or_count(
    client: TestClient, account: Account, publish: Publish, images: np.ndarray, status: int,
    code: str,
) -> None:  # fmt: skip
    model_id = publish(account)
    assert_error(scores(client, account, model_id, npz(images=images)), status, code)


def test_bounded_fields_and_body(
    client: TestClient, account: Account, publish: Publish, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    model_id = publish(account)
    body = npz(images=digits[0][:2])
    for field, value in (("steps", "0"), ("starts", "17"), ("method", "both-ish"),
                         ("feature_weight", "nan"), ("seed", "x"), ("colour", "red")):  # fmt: skip
        assert_error(scores(client, account, model_id, body, **{field: value}), 422, param=field)
    too_big = npz(images=np.random.default_rng(0).integers(0, 255, (12, 32, 32), np.uint8))
    assert_error(scores(client, account, model_id, too_big), 413)
    assert_error(scores(client, account, model_id, b"not an archive", "x.png"), 415)
    response = client.post(f"/v1/models/{model_id}/scores", headers=account.headers, json={})
    assert_error(response, 415)
