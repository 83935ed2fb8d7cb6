"""Paired uploads and ``POST /v1/models/{id}/translate`` over HTTP, on PostgreSQL."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.services.jobs import DataFacts
from gan_engine.artifacts import CONFIG_FILE, GeneratorArtifact
from gan_engine.data.builtins import MAPPED_FROM_BYTES, load_digits
from gan_engine.data.packs import image_bytes, read_pack, write_pack
from gan_engine.data.paired import edge_map
from gan_engine.spec import Spec
from store.storage import ObjectStorage, dataset_pack_key
from tests.api.conftest import TINY_MONITOR, Account, Publish, assert_error, make_settings, train
from tests.api.test_datasets import npz_bytes, png, upload, zip_bytes

EDGES = {
    "task": "translation",
    "model": {"image_size": 8, "width": 8},
    "training": {"steps": 4, "batch_size": 8, "seed": 7, "device": "cpu"},
    "monitor": TINY_MONITOR,
}


@pytest.fixture
def pack_of(storage: ObjectStorage, tmp_path: Path) -> Any:
    def read(dataset_id: str) -> Any:
        path = tmp_path / f"{dataset_id}.npz"
        path.write_bytes(storage.get_bytes(dataset_pack_key(dataset_id)))
        return read_pack(path)

    return read


@pytest.fixture(scope="module")
def edge_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    digits = load_digits("train")
    inputs = edge_map(digits.data[:200])[:, 0].numpy()
    path = tmp_path_factory.mktemp("pairs") / "edges2digits.npz"
    write_pack(path, digits.data[:200, 0].numpy(), inputs=inputs)
    return path, inputs


@pytest.fixture
def translator(
    artifacts: dict[str, tuple[Spec, dict[str, bytes]]],
    edge_inputs: tuple[Path, np.ndarray],
    publish: Publish,
    account: Account,
) -> str:
    """A 4-step edges -> digits translation model of ``account``."""
    if "edges" not in artifacts:
        artifacts["edges"] = train({**EDGES, "dataset": {"path": str(edge_inputs[0])}})
    return publish(account, "edges")


def translate(
    client: TestClient, account: Account, model_id: str, data: bytes, filename: str, **form: str
) -> Any:
    return client.post(
        f"/v1/models/{model_id}/translate",
        headers=account.headers,
        files={"file": (filename, data)},
        data=form or None,
    )


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# --- paired uploads ----------------------------------------------------------------------------


def test_a_paired_npz_upload_keeps_its_inputs(
    client: TestClient, account: Account, pack_of: Any
) -> None:
    inputs = np.random.default_rng(1).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    targets = np.random.default_rng(2).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    response = upload(client, account, npz_bytes(inputs=inputs, targets=targets), "sr.npz")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["n_images"] == 5 and body["image_shape"] == [16, 16, 3]
    assert body["input_shape"] == [4, 4, 3]
    pack = pack_of(body["id"])
    assert np.array_equal(pack.inputs.transpose(0, 2, 3, 1), inputs)
    assert np.array_equal(pack.images.transpose(0, 2, 3, 1), targets)


def test_a_zip_of_a_and_b_folders_is_paired_by_file_name(
    client: TestClient, account: Account, pack_of: Any
) -> None:
    rng = np.random.default_rng(3)
    a = {name: rng.integers(0, 256, (8, 8), dtype=np.uint8) for name in ("x", "y", "z")}
    b = {name: rng.integers(0, 256, (16, 16), dtype=np.uint8) for name in ("x", "y", "z")}
    entries = {f"A/{k}.png": png(v) for k, v in a.items()} | {
        f"B/{k}.png": png(v) for k, v in reversed(b.items())
    }
    response = upload(client, account, zip_bytes(entries), "pairs.zip")
    assert response.status_code == 201, response.text
    assert response.json()["image_shape"] == [16, 16, 1]
    assert response.json()["input_shape"] == [8, 8, 1]
    assert response.json()["class_names"] is None
    pack = pack_of(response.json()["id"])
    assert np.array_equal(pack.inputs[:, 0], np.stack([a["x"], a["y"], a["z"]]))
    assert np.array_equal(pack.images[:, 0], np.stack([b["x"], b["y"], b["z"]]))


def test_a_job_and_its_dataset_must_agree_on_pairing(client: TestClient, account: Account) -> None:
    pairs = npz_bytes(inputs=np.zeros((8, 4, 4), np.uint8), targets=np.zeros((8, 16, 16), np.uint8))
    paired = upload(client, account, pairs, "sr.npz").json()
    plain = upload(client, account, npz_bytes(images=np.zeros((8, 16, 16), np.uint8)), "p.npz")
    small = {"model": {"width": 8, "latent_dim": 8}, "training": {"steps": 2, "batch_size": 4}}

    generation = client.post("/v1/jobs", headers=account.headers,
                             json=small | {"dataset": {"id": paired["id"]}})  # fmt: skip
    error = assert_error(generation, 422, param="dataset.id")
    assert "task 'translation'" in error["message"]
    translation = client.post("/v1/jobs", headers=account.headers,
                              json=small | {"task": "translation",
                                            "dataset": {"id": plain.json()["id"]}})  # fmt: skip
    assert "needs paired data" in assert_error(translation, 422, param="dataset.id")["message"]
    ok = client.post("/v1/jobs", headers=account.headers,
                     json={"task": "translation", "dataset": {"id": paired["id"]},
                           "training": {"steps": 2, "batch_size": 4}})  # fmt: skip
    assert ok.status_code == 202, ok.text
    assert plain.json()["input_shape"] is None


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"inputs": np.zeros((2, 8, 8), np.uint8)}, "both 'inputs' and 'targets'"),
        ({"inputs": np.zeros((2, 8, 8), np.uint8), "targets": np.zeros((3, 8, 8), np.uint8)},
         "one target per input"),
        ({"inputs": np.zeros((2, 8, 8, 2), np.uint8), "targets": np.zeros((2, 8, 8), np.uint8)},
         "'inputs' must have 1 (grey) or 3 (RGB) channels"),
    ],
)  # fmt: skip
def test_bad_paired_npz_is_422(
    client: TestClient, account: Account, arrays: dict, message: str
) -> None:
    error = assert_error(
        upload(client, account, npz_bytes(**arrays), "p.npz"), 422, "invalid_dataset", "file"
    )
    assert message in error["message"]


def test_unmatched_a_and_b_names_are_422(client: TestClient, account: Account) -> None:
    image = png(np.zeros((8, 8), np.uint8))
    entries = {"A/x.png": image, "A/y.png": image, "B/x.png": image}
    error = assert_error(upload(client, account, zip_bytes(entries), "p.zip"), 422, param="file")
    assert "A/y has no partner" in error["message"]


# --- translate ---------------------------------------------------------------------------------


def test_translate_a_png_an_npy_batch_and_json(
    client: TestClient, account: Account, translator: str, edge_inputs: tuple[Path, np.ndarray]
) -> None:
    inputs = edge_inputs[1]
    one = translate(client, account, translator, png(inputs[0]), "edge.png")
    assert one.status_code == 200, one.text
    assert one.headers["content-type"] == "image/png"
    again = translate(client, account, translator, png(inputs[0]), "edge.png")
    assert again.content == one.content  # deterministic: dropout is off when serving
    batch = translate(client, account, translator, npy(inputs[:6]), "b.npy", format="npy")
    assert batch.status_code == 200, batch.text
    outputs = np.load(io.BytesIO(batch.content), allow_pickle=False)
    assert outputs.shape == (6, 8, 8) and outputs.dtype == np.uint8
    body = translate(client, account, translator, npy(inputs[:2]), "b.npy", format="json").json()
    assert body["shape"] == [2, 8, 8] and np.array_equal(np.array(body["samples"]), outputs[:2])
    single = translate(client, account, translator, npy(inputs[0]), "one.npy", format="npy")
    assert np.array_equal(np.load(io.BytesIO(single.content)), outputs[:1])


def test_a_translate_upload_may_pass_the_json_body_limit_up_to_its_own(
    tmp_path: Path, pg_url: str, account: Account, translator: str
) -> None:
    big = npy(np.zeros((80, 128, 128), np.uint8))  # 1.3 MB: over the 1 MiB JSON body limit
    assert len(big) > 1024 * 1024
    for limit, status in ((16 * 1024 * 1024, 200), (1024 * 1024, 413)):
        settings = make_settings(tmp_path, pg_url, max_translate_upload_bytes=limit)
        with TestClient(create_app(settings)) as client:  # the same database and storage
            answer = translate(client, account, translator, big, "big.npy", format="npy")
            assert answer.status_code == status, answer.text[:300]


def test_the_served_translation_is_the_artifact_s(
    client: TestClient,
    account: Account,
    translator: str,
    artifacts: dict[str, tuple[Spec, dict[str, bytes]]],
    edge_inputs: tuple[Path, np.ndarray],
) -> None:
    _, files = artifacts["edges"]
    artifact = GeneratorArtifact.from_bytes(files["generator.safetensors"], files[CONFIG_FILE])
    want = artifact.translate(edge_inputs[1][:3]).data
    got = translate(client, account, translator, npy(edge_inputs[1][:3]), "x.npy", format="npy")
    assert np.array_equal(np.load(io.BytesIO(got.content)), want)


def test_translate_refusals(
    client: TestClient, account: Account, other: Account, translator: str, publish: Publish
) -> None:
    generator = publish(account)
    edge = png(np.zeros((8, 8), np.uint8))
    assert_error(
        translate(client, account, generator, edge, "e.png"), 422, "not_a_translation_model",
        "model",
    )  # fmt: skip
    samples = client.post(
        f"/v1/models/{translator}/samples", headers=account.headers, json={"n": 4}
    )
    assert "translation model" in assert_error(samples, 422, param="model")["message"]
    assert_error(translate(client, account, translator, b"GIF89a...", "x.gif"), 415, param="file")
    floats = npy(np.zeros((2, 8, 8), np.float32))
    assert (
        "uint8"
        in assert_error(translate(client, account, translator, floats, "f.npy"), 422, param="file")[
            "message"
        ]
    )
    assert_error(
        translate(client, account, translator, edge, "e.png", format="gif"), 422, param="format"
    )
    assert_error(translate(client, other, translator, edge, "e.png"), 404)


def test_the_paired_builtins_are_listed_described_previewed_and_trainable(
    client: TestClient, account: Account, tmp_path: Path
) -> None:
    listed = client.get("/v1/datasets?builtin=true", headers=account.headers).json()["data"]
    paired = {d["name"]: d for d in listed if d["kind"] == "paired"}
    assert set(paired) == {"edges2fashion", "superres-x4-fashion", "superres-x4-mnist",
                           "superres-x4-photos"}  # fmt: skip
    assert paired["superres-x4-photos"]["input_shape"] == [64, 64, 3]
    detail = client.get("/v1/datasets/builtin/superres-x4-photos", headers=account.headers)
    assert detail.status_code == 200 and detail.json()["class_counts"] == []
    preview = client.get("/v1/datasets/builtin/superres-x4-photos/preview.png",
                         headers=account.headers)  # fmt: skip
    assert preview.status_code == 200 and preview.content.startswith(b"\x89PNG")
    (tmp_path / "photos-preview.png").write_bytes(preview.content)

    spec = {"dataset": {"builtin": "superres-x4-photos"}, "training": {"steps": 2}}
    job = client.post("/v1/jobs", headers=account.headers, json=spec | {"task": "translation"})
    assert job.status_code == 202, job.text
    refused = client.post("/v1/jobs", headers=account.headers, json=spec)
    assert_error(refused, 422, param="dataset.builtin")


def test_a_paired_dataset_counts_its_inputs_in_the_mapped_rule(tmp_path: Path) -> None:
    """The API decides as the worker's loader does (``image_bytes``: inputs and targets)."""
    count = MAPPED_FROM_BYTES // (64 * 64 * 3)  # targets alone just within the threshold
    plain = DataFacts(count, 64, 64, 3, 0)
    paired = DataFacts(count, 64, 64, 3, 0, input_values=32 * 32 * 3)
    assert not plain.mapped and paired.mapped
    small = tmp_path / "pairs.npz"
    rng = np.random.default_rng(0)
    targets, inputs = rng.integers(0, 256, (5, 8, 8, 3), np.uint8), np.zeros((5, 4, 4), np.uint8)
    write_pack(small, targets, inputs=inputs)
    assert image_bytes(small) == 5 * (8 * 8 * 3 + 4 * 4)
