"""Where the client finds the service: the arguments (``--url``/``--api-key``), else the
environment (``GANFORGE_URL``, ``GANFORGE_API_KEY``), else what ``ganforge login`` saved.

The login file is ``config.json`` in ``GANFORGE_CONFIG_DIR``, else in the user's config folder
(``click.get_app_dir("ganforge")``: ``~/.config/ganforge`` on Linux), mode 0600.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from click import get_app_dir

URL_ENV = "GANFORGE_URL"
API_KEY_ENV = "GANFORGE_API_KEY"
CONFIG_DIR_ENV = "GANFORGE_CONFIG_DIR"
CONFIG_FILE = "config.json"
DEFAULT_URL = "http://127.0.0.1:8000"  # what `ganforge up` serves


@dataclass(frozen=True)
class Login:
    url: str | None = None
    api_key: str | None = None


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    chosen = env.get(CONFIG_DIR_ENV)
    return Path(chosen).expanduser() if chosen else Path(get_app_dir("ganforge"))


def config_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / CONFIG_FILE


def read_login(env: Mapping[str, str] | None = None) -> Login:
    """What ``ganforge login`` saved; an empty :class:`Login` when nothing (or junk) is there."""
    try:
        saved = json.loads(config_path(env).read_text())
    except (OSError, ValueError):
        return Login()
    if not isinstance(saved, dict):
        return Login()
    url, key = saved.get("url"), saved.get("api_key")
    return Login(url if isinstance(url, str) else None, key if isinstance(key, str) else None)


def save_login(login: Login, env: Mapping[str, str] | None = None) -> Path:
    """Write the login file, readable by its owner only (the key is a secret)."""
    path = config_path(env)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump({"url": login.url, "api_key": login.api_key}, out, indent=2)
        out.write("\n")
    path.chmod(0o600)  # O_CREAT's mode does not apply to an existing file
    return path


def resolve(
    url: str | None = None, api_key: str | None = None, env: Mapping[str, str] | None = None
) -> Login:
    """Each of the URL and the key, separately: the argument, else the environment, else the
    login file; the URL falls back to :data:`DEFAULT_URL`, the key to None."""
    env = os.environ if env is None else env
    saved = read_login(env)
    return Login(
        url=(url or env.get(URL_ENV) or saved.url or DEFAULT_URL).rstrip("/"),
        api_key=api_key or env.get(API_KEY_ENV) or saved.api_key,
    )
