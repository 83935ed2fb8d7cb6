"""Where the client finds the service: arguments over the environment over the login file."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ganforge import Client
from ganforge.cli import app
from ganforge.cli import client as cli_client
from ganforge.config import DEFAULT_URL, Login, config_path, read_login, resolve, save_login


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GANFORGE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("GANFORGE_URL", raising=False)
    monkeypatch.delenv("GANFORGE_API_KEY", raising=False)
    return tmp_path / "config"


def test_arguments_beat_the_environment_which_beats_the_login_file(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve() == Login(DEFAULT_URL, None)
    save_login(Login("http://saved:1", "gf_saved"))
    assert resolve() == Login("http://saved:1", "gf_saved")

    monkeypatch.setenv("GANFORGE_URL", "http://env:2/")
    assert resolve() == Login("http://env:2", "gf_saved")  # each value on its own
    monkeypatch.setenv("GANFORGE_API_KEY", "gf_env")
    assert resolve() == Login("http://env:2", "gf_env")

    assert resolve("http://arg:3", "gf_arg") == Login("http://arg:3", "gf_arg")
    client = Client(api_key="gf_arg")
    assert (client.base_url, client.api_key) == ("http://env:2", "gf_arg")
    assert client._http.headers["Authorization"] == "Bearer gf_arg"


def test_the_login_file_is_private_and_junk_in_it_is_ignored(config_dir: Path) -> None:
    path = save_login(Login("http://saved:1", "gf_saved"))
    assert path == config_dir / "config.json" == config_path()
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text()) == {"url": "http://saved:1", "api_key": "gf_saved"}

    path.write_text("not json")
    assert read_login() == Login()


def test_cli_flags_beat_the_environment(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANFORGE_URL", "http://env:2")
    monkeypatch.setenv("GANFORGE_API_KEY", "gf_environment")
    runner = CliRunner()

    from_env = runner.invoke(app, ["whoami"])
    assert from_env.exit_code == 0, from_env.output
    assert "http://env:2" in from_env.stdout and "gf_envi…" in from_env.stdout
    assert "gf_environment" not in from_env.stdout  # masked

    flagged = runner.invoke(app, ["--url", "http://flag:4", "--api-key", "gf_flagged", "whoami"])
    assert "http://flag:4" in flagged.stdout and "gf_flag…" in flagged.stdout


def test_login_refuses_a_url_without_a_scheme_with_exit_code_2(config_dir: Path) -> None:
    result = CliRunner().invoke(app, ["login", "localhost:8000", "--key", "gf_x"])
    assert result.exit_code == 2
    assert "http://" in result.stderr and not config_path().exists()


def test_an_unreachable_service_exits_with_code_4(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(cli_client, "Client", functools.partial(Client, sleep=slept.append))
    result = CliRunner().invoke(
        app, ["--url", "http://127.0.0.1:9", "--api-key", "gf_x", "jobs", "list"]
    )
    assert result.exit_code == 4, result.output
    assert "cannot reach http://127.0.0.1:9" in result.stderr
    assert slept == [0.5, 1.0, 2.0, 4.0]  # a refused connection is tried 5 times
