"""The deployment files, checked by reading them (no Docker engine here): docker-compose.yml,
the Dockerfile, .env.example and .dockerignore."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from api.config import ApiSettings
from ganforge.cli import app as cli_app
from store.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"api", "worker", "webhooks", "postgres", "redis", "minio", "createbucket", "migrate"}
BACKENDS = {"postgres": "service_healthy", "redis": "service_healthy", "minio": "service_healthy"}
ONE_SHOTS = {"migrate": "service_completed_successfully",
             "createbucket": "service_completed_successfully"}  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_has_every_service_with_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    for name in ("api", "worker", "webhooks", "postgres", "redis", "minio"):
        assert services[name]["healthcheck"]["test"], name
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    for name in ("createbucket", "migrate"):
        assert services[name]["restart"] == "no"


def test_api_and_worker_start_after_the_one_shots_succeed(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api", "worker"):
        conditions = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert conditions == BACKENDS | ONE_SHOTS, name
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["createbucket"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert "mc mb --ignore-existing" in " ".join(services["createbucket"]["entrypoint"])
    hooks = {dep: spec["condition"] for dep, spec in services["webhooks"]["depends_on"].items()}
    assert hooks == {"postgres": "service_healthy", "redis": "service_healthy",
                     "migrate": "service_completed_successfully"}  # fmt: skip
    assert services["webhooks"]["command"][:2] == ["ganforge", "webhooks"]
    assert "deploy" not in services["webhooks"]  # no GPU


def test_the_worker_reserves_an_nvidia_gpu(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == 1
    assert device["capabilities"] == ["gpu"]
    assert "deploy" not in compose["services"]["api"]  # the API samples on its CPU


def test_ganforge_services_share_one_image_and_the_service_urls(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api", "worker", "webhooks", "migrate"):
        service = services[name]
        assert service["build"] == "." and service["env_file"] == ".env"
        environment = service["environment"]
        assert environment["DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in environment["DATABASE_URL"]
        assert environment["BROKER_URL"] == "redis://redis:6379/0"
        assert environment["STORAGE_URL"].startswith("s3://")
        assert environment["S3_ENDPOINT_URL"] == "http://minio:9000"
    named = set(compose["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in named, volume


def _parses(args: list[str]) -> bool:
    """Whether the arguments parse against the ganforge CLI: options are parsed before the eager
    ``--help`` runs, so an unknown command or option fails and nothing else runs."""
    result = CliRunner().invoke(cli_app, [*args, "--help"])
    return result.exit_code == 0


def test_the_commands_compose_runs_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api", "worker", "migrate"):
        command = services[name]["command"]
        assert command[0] == "ganforge", name
        assert _parses(command[1:]), command
    assert not _parses(["api", "--no-such-option"])
    assert not _parses(["no-such-command"])


def test_env_example_documents_every_setting_and_compose_variable(
    compose: dict[str, Any],
) -> None:
    text = (REPO_ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    settings = {name.upper() for name in (*Settings.model_fields, *ApiSettings.model_fields)}
    assert settings - documented == set()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (REPO_ROOT / "docker-compose.yml").read_text()))
    assert used - documented == set()
    secrets = re.findall(r"^([A-Z_]*PASSWORD)=(.*)$", text, flags=re.MULTILINE)
    assert secrets and all(value.startswith("change-me") for _, value in secrets)


def test_dockerfile_builds_on_a_cuda_torch_image_and_runs_unprivileged() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)", text, flags=re.MULTILINE)
    assert base and re.fullmatch(r"pytorch/pytorch:2\.\d+\.\d+-cuda12\.\d+-cudnn9-runtime", base[1])
    assert '--constraint /etc/ganforge-constraints.txt ".[service]"' in text
    users = re.findall(r"^USER (\S+)", text, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    healthcheck = text[text.index("HEALTHCHECK") :]
    assert "/healthz" in healthcheck.split("\nCMD [")[0]
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", ".env", "tests"} <= set(ignored)
