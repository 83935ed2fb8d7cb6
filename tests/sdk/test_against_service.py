"""The SDK and the client commands against the real service: one ``ganforge up`` (SQLite, a
storage folder, a local worker) for the whole module, tiny 2-D jobs of a few steps."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from ganforge import APIError, AsyncClient, Client, Job
from ganforge.cli import app
from store.webhooks import verify
from tests.fixtures.embedded import Up

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SPEC = {
    "dataset": {"builtin": "ring8"},
    "model": {"architecture": "mlp", "conditioning": "concat", "width": 32, "latent_dim": 4,
              "mlp_layers": 2},
    "training": {"steps": 20, "batch_size": 16, "device": "cpu"},
    "monitor": {"log_every": 5, "sample_every": 10, "checkpoint_every": 10, "eval_samples": 100},
}  # fmt: skip


@pytest.fixture(scope="module")
def trained(client: Client) -> Job:
    job = client.jobs.create(SPEC | {"name": "sdk ring", "tags": ["sdk"]})
    assert job.status == "queued" and job.progress.total == 20
    return client.jobs.wait(job.id, progress=True, timeout=180)


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GANFORGE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("GANFORGE_URL", raising=False)
    monkeypatch.delenv("GANFORGE_API_KEY", raising=False)
    return tmp_path


def class_folders(root: Path) -> Path:
    for label, name in enumerate(["bag", "shoe"]):
        (root / name).mkdir(parents=True)
        for i in range(3):
            pixels = np.full((8, 8), 40 * label + 10 * i, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_datasets_upload_a_folder_and_an_npz_list_get_and_delete(
    client: Client, tmp_path: Path
) -> None:
    from_folder = client.datasets.upload(class_folders(tmp_path / "clothes"))
    assert from_folder.name == "clothes" and from_folder.n_images == 6
    assert from_folder.class_names == ["bag", "shoe"] and from_folder.image_shape == [8, 8, 1]

    npz = tmp_path / "pack.npz"
    np.savez(npz, images=np.zeros((4, 8, 8), np.uint8), labels=np.array([0, 1, 0, 1]))
    packed = client.datasets.upload(npz, name="zeros")
    assert (packed.name, packed.n_images, packed.num_classes) == ("zeros", 4, 2)

    assert {d.id for d in client.datasets.list()} >= {from_folder.id, packed.id}
    assert client.datasets.get(packed.id) == packed
    assert "ring8" in {d.name for d in client.datasets.builtins()}
    client.datasets.delete(packed.id)
    with pytest.raises(APIError) as gone:
        client.datasets.get(packed.id)
    assert (gone.value.status, gone.value.code) == (404, "not_found")


def test_a_job_trains_and_its_model_samples_and_exports(
    client: Client, trained: Job, tmp_path: Path
) -> None:
    assert trained.status == "succeeded", trained.error
    assert trained.progress.step == 20 and trained.model_id is not None
    assert any(event.code for event in client.jobs.events(trained.id))
    losses = client.jobs.metrics(trained.id, name="d_loss")
    assert list(losses) == ["d_loss"] and [step for step, _ in losses["d_loss"]] == [5, 10, 15, 20]

    model = client.models.get(trained.model_id)
    assert model.image_shape == [2] and model.num_classes == 8
    points = client.models.sample(model.id, class_names=["mode3"], n=8, seed=3)
    assert points.shape == (8, 2) and points.dtype == np.float32
    again = client.models.sample(model.id, class_names=["mode3"], n=8, seed=3)
    assert np.array_equal(points, again)
    assert client.models.sample_grid(model.id, labels=[0, 3], n=4).startswith(PNG_MAGIC)

    folder = client.models.export(model.id, tmp_path / "exported")
    assert {"generator.safetensors", "config.json", "spec.json"} <= {
        p.name for p in folder.iterdir()
    }
    archive = client.models.export(model.id, tmp_path / "model.zip")
    assert "generator.safetensors" in zipfile.ZipFile(archive).namelist()

    csv = client.jobs.metrics_csv(trained.id, tmp_path / "metrics.csv")
    assert csv.read_text().startswith("step,")
    board = client.jobs.tensorboard(trained.id, tmp_path / "tb.zip")
    assert any("tfevents" in name for name in zipfile.ZipFile(board).namelist())


def test_a_model_walks_and_refuses_what_its_kind_cannot(client: Client, trained: Job) -> None:
    assert trained.model_id is not None
    seeds = client.models.interpolate(trained.model_id, from_seed=1, to_seed=2, frames=5)
    assert seeds.shape == (5, 2) and seeds.dtype == np.float32
    first = client.models.sample(trained.model_id, labels=[0], n=1, seed=1)
    assert np.allclose(seeds[0], first[0], atol=1e-5)  # the same z; batch-size rounding aside
    classes = client.models.interpolate(trained.model_id, from_class="mode1", to_class=5)
    assert classes.shape == (8, 2)
    with pytest.raises(APIError, match="wrong_model_kind"):
        client.models.interpolation_image(trained.model_id, to_seed=2, format="gif")
    with pytest.raises(APIError, match="wrong_model_kind"):
        client.models.materialize_dataset(trained.model_id, per_class=2)


def test_labels_change_and_filter_lists(client: Client, trained: Job) -> None:
    renamed = client.jobs.update(trained.id, name="renamed", metadata={"owner": "sdk"})
    assert (renamed.name, renamed.tags, renamed.metadata) == ("renamed", ["sdk"], {"owner": "sdk"})
    assert [job.id for job in client.jobs.list(tag="sdk")] == [trained.id]
    assert list(client.jobs.list(tag="no-such-tag")) == []
    assert trained.id in {job.id for job in client.jobs.list(status="succeeded")}
    assert trained.model_id is not None
    model = client.models.update(trained.model_id, tags=["kept"])
    assert model.tags == ["kept"] and [m.id for m in client.models.list(tag="kept")] == [model.id]


def test_continue_cancel_and_delete(client: Client, trained: Job) -> None:
    continued = client.jobs.continue_(trained.id, 30)
    assert continued.continued_from == trained.id and continued.progress.total == 30
    client.jobs.cancel(continued.id)
    finished = client.jobs.wait(continued.id, progress=False, timeout=60)
    assert finished.status == "cancelled"
    with pytest.raises(APIError) as refused:  # a job whose model exists stays
        client.jobs.delete(trained.id)
    assert refused.value.status == 409
    client.jobs.delete(continued.id)
    with pytest.raises(APIError, match="not_found"):
        client.jobs.get(continued.id)


def test_the_async_client_reads_and_samples(service: Up, trained: Job) -> None:
    async def main() -> tuple[str, tuple[int, ...]]:
        async with AsyncClient(service.url, service.key()) as client:
            job = await client.jobs.wait(trained.id, timeout=10)
            assert job.model_id is not None
            points = await client.models.sample(job.model_id, n=16)
            walk = await client.models.interpolate(job.model_id, to_seed=1, frames=3)
            assert walk.shape == (3, 2)
            with pytest.raises(APIError, match="wrong_model_kind"):
                await client.models.interpolation_image(job.model_id, to_seed=1)
            with pytest.raises(APIError, match="wrong_model_kind"):
                await client.models.materialize_dataset(job.model_id, per_class=1)
            return job.status, points.shape

    assert asyncio.run(main()) == ("succeeded", (16, 2))


def test_cli_login_submit_follow_sample_and_list(service: Up, cli_env: Path) -> None:
    runner = CliRunner()
    logged_in = runner.invoke(app, ["login", service.url, "--key", service.key()])
    assert logged_in.exit_code == 0, logged_in.output
    assert (cli_env / "config" / "config.json").stat().st_mode & 0o777 == 0o600

    spec = cli_env / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC | {"name": "from the cli"}))
    submitted = runner.invoke(app, ["submit", str(spec), "--follow", "--json"])
    assert submitted.exit_code == 0, submitted.output
    job = json.loads(submitted.stdout)
    assert job["status"] == "succeeded" and job["name"] == "from the cli"
    assert "submitted job_" in submitted.stderr and "succeeded; model" in submitted.stderr

    listed = runner.invoke(app, ["jobs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert job["id"] in [row["id"] for row in json.loads(listed.stdout)]
    table = runner.invoke(app, ["jobs", "show", job["id"]])
    assert table.exit_code == 0 and "succeeded" in table.stdout and "reverse_kl" in table.stdout

    model = job["model_id"]
    array = cli_env / "points.npy"
    sampled = runner.invoke(
        app, ["sample", model, "--class-names", "mode3,mode5", "--n", "4", "--seed", "1",
              "--out", str(array)],
    )  # fmt: skip
    assert sampled.exit_code == 0, sampled.output
    assert np.load(array).shape == (4, 2)
    grid = cli_env / "grid.png"
    assert (
        runner.invoke(app, ["sample", model, "--labels", "0,3", "--out", str(grid)]).exit_code == 0
    )
    assert grid.read_bytes().startswith(PNG_MAGIC)
    walk = cli_env / "walk.npy"
    walked = runner.invoke(app, ["interpolate", model, "--from-class", "mode2", "--to-class", "6",
                                 "--frames", "4", "--out", str(walk)])  # fmt: skip
    assert walked.exit_code == 0, walked.output
    assert np.load(walk).shape == (4, 2)
    refused = runner.invoke(app, ["models", "materialize", model, "--per-class", "2"])
    assert refused.exit_code == 1 and "wrong_model_kind" in refused.stderr
    exported = runner.invoke(app, ["export", model, "--out", str(cli_env / "model")])
    assert exported.exit_code == 0 and (cli_env / "model" / "config.json").is_file()

    logs = runner.invoke(app, ["jobs", "logs", job["id"]])
    assert logs.exit_code == 0 and logs.stdout.strip()
    missing = runner.invoke(app, ["jobs", "show", "job_doesnotexist"])
    assert missing.exit_code == 1 and "404 not_found" in missing.stderr
    usage = runner.invoke(app, ["sample", model, "--out", str(cli_env / "x.jpg")])
    assert usage.exit_code == 2
    stored = runner.invoke(app, ["usage", "--json"])
    assert stored.exit_code == 0 and json.loads(stored.stdout)["storage_bytes"]["total"] > 0
    hooks = runner.invoke(app, ["jobs", "webhooks", job["id"], "--json"])
    assert hooks.exit_code == 0 and json.loads(hooks.stdout) == []  # it has no webhook


def test_cli_exits_3_when_a_followed_job_does_not_succeed(
    service: Up, client: Client, trained: Job, cli_env: Path
) -> None:
    continued = client.jobs.continue_(trained.id, 40)
    client.jobs.cancel(continued.id)
    result = CliRunner().invoke(
        app, ["--url", service.url, "--api-key", service.key(), "jobs", "wait", continued.id,
              "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    assert f"{continued.id} cancelled" in result.stderr


def test_a_webhook_is_delivered_signed_by_the_services_own_webhook_worker(
    client: Client, tmp_path: Path
) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(
                (dict(self.headers), self.rfile.read(int(self.headers["Content-Length"])))
            )
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = "sdk-webhook-secret-0123"
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        hook = {"url": url, "secret": secret, "events": ["started", "completed"]}
        job = client.jobs.create(SPEC | {"webhook": hook})
        assert job.webhook is not None and job.webhook.signed
        client.jobs.wait(job.id, progress=False, timeout=180)
        deadline = time.monotonic() + 60
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # polling interval: the deliveries come from another process
    finally:
        server.shutdown()
        server.server_close()

    types = sorted(json.loads(body)["type"] for _, body in received)
    assert types == ["job.completed", "job.started"]  # tried in parallel: either may come first
    for headers, body in received:
        assert verify(secret, headers["Ganforge-Signature"], body)
    deliveries = client.jobs.webhook_deliveries(job.id)
    assert [(d.event, d.status, len(d.attempts)) for d in deliveries] == [
        ("started", "delivered", 1), ("completed", "delivered", 1),
    ]  # fmt: skip
    usage = client.usage()
    assert usage.job_seconds > 0 and usage.storage_bytes.checkpoints > 0
    assert usage.storage_bytes.total == sum(
        getattr(usage.storage_bytes, kind)
        for kind in ("datasets", "samples", "checkpoints", "models")
    )


def test_the_accounts_default_webhook_is_set_read_and_removed(client: Client) -> None:
    assert client.default_webhook() is None
    hook = client.set_default_webhook("http://127.0.0.1:9/hook", events=["completed"],
                                      secret="default-secret-0123456")  # fmt: skip
    assert (hook.url, hook.events, hook.signed) == ("http://127.0.0.1:9/hook", ["completed"], True)
    assert client.default_webhook() == hook
    with pytest.raises(APIError) as refused:
        client.set_default_webhook("ftp://127.0.0.1/x")
    assert (refused.value.status, refused.value.param) == (422, "url")
    client.delete_default_webhook()
    assert client.default_webhook() is None


DIGITS_SPEC = {
    "name": "sdk digits",
    "dataset": {"builtin": "digits", "classes": [0]},
    "model": {"image_size": 8, "width": 8, "latent_dim": 16},
    "training": {"steps": 20, "batch_size": 16, "device": "cpu"},
    "monitor": {"log_every": 5, "sample_every": 20, "checkpoint_every": 20, "eval_samples": 100,
                "metrics": []},
}  # fmt: skip


@pytest.fixture(scope="module")
def digits_model(client: Client) -> str:
    """A tiny image model trained by the real worker, which exports its discriminator too."""
    job = client.jobs.wait(client.jobs.create(DIGITS_SPEC).id, timeout=180)
    assert job.status == "succeeded" and job.model_id is not None
    return job.model_id


def test_scores_sync_async_and_from_the_cli(
    service: Up, client: Client, digits_model: str, cli_env: Path
) -> None:
    images = np.zeros((3, 8, 8), np.uint8)
    images[1] = 255
    found = client.models.scores(digits_model, images, steps=5, starts=1, seed=2)
    assert found.count == 3 and set(found.scores) == {"discriminator", "reconstruction"}
    assert found.search is not None and found.search.steps == 5
    only = client.models.scores(digits_model, images, method="discriminator")
    assert only.scores == {"discriminator": found.scores["discriminator"]}
    with pytest.raises(APIError, match="image_shape"):
        client.models.scores(digits_model, np.zeros((1, 9, 9), np.uint8))

    async def scored() -> dict[str, list[float]]:
        async with AsyncClient(service.url, service.key()) as async_client:
            result = await async_client.models.scores(digits_model, images, steps=5, starts=1,
                                                      seed=2)  # fmt: skip
            return result.scores

    assert asyncio.run(scored()) == found.scores

    archive = cli_env / "images.npz"
    np.savez(archive, images=images)
    runner = CliRunner()
    assert runner.invoke(app, ["login", service.url, "--key", service.key()]).exit_code == 0
    command = ["models", "score", digits_model, str(archive), "--method", "discriminator", "--json"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scores"] == only.scores
    exported = client.models.export(digits_model, cli_env / "model")
    assert (exported / "discriminator.safetensors").is_file()
