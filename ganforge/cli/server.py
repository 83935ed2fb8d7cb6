"""The server commands of ``ganforge``: run the service.

ganforge up                      the embedded service: API + one worker, everything under DATA_DIR
ganforge api / ganforge worker   one process each, against the configured URLs (production)
ganforge keys create --tenant T  a new API key
ganforge migrate                 bring the database schema to the latest revision

Settings come from environment variables (and ``.env``); see ``store/settings.py``. The service's
modules (``store``, ``api``, ``worker``, SQLAlchemy) are imported inside the commands, so the
client commands beside these load without the service installed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from ganforge.cli.app import SERVER_PANEL, app

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from store.settings import Settings

keys_app = typer.Typer(no_args_is_help=True, help="API keys (server side: needs DATABASE_URL).")
app.add_typer(keys_app, name="keys", rich_help_panel=SERVER_PANEL)

DEFAULT_TENANT = "default"
KEY_FILE = "api-key"  # the embedded key's plaintext, mode 0600, in DATA_DIR
API_START_TIMEOUT_S = 120.0
WORKER_STOP_TIMEOUT_S = 60.0  # the worker checkpoints the running job before it exits
API_STOP_TIMEOUT_S = 15.0

Host = Annotated[str, typer.Option(help="interface to listen on")]
Port = Annotated[int, typer.Option(min=1, max=65535, help="TCP port")]


def _say(message: str) -> None:
    print(message, flush=True)


def _settings() -> Settings:
    from store.settings import get_settings

    get_settings.cache_clear()  # read the environment as it is now
    return get_settings()


# --- keys and migrations -----------------------------------------------------------------------


def _migrate(database_url: str) -> None:
    from store.migrate import upgrade

    upgrade(database_url)


@app.command(rich_help_panel=SERVER_PANEL)
def migrate() -> None:
    """Bring the database (DATABASE_URL) to the latest schema revision."""
    settings = _settings()
    settings.ensure_dirs()
    _migrate(settings.database_url)
    from store.migrate import current_revision

    _say(f"database at revision {current_revision(settings.database_url)}")


def _tenant_id(session: Session, name: str) -> str:
    """The id of the oldest tenant called ``name``, created if there is none."""
    from sqlalchemy import select

    from store.auth import create_tenant
    from store.models import Tenant

    query = select(Tenant.id).where(Tenant.name == name).order_by(Tenant.created_at).limit(1)
    found = session.scalar(query)
    return found if found is not None else create_tenant(session, name=name).id


def _require_migrated(database_url: str) -> None:
    from store.migrate import current_revision, head_revision

    current = current_revision(database_url)
    if current != head_revision():
        typer.echo(
            f"error: the database is at revision {current}, not the latest: run `ganforge migrate`",
            err=True,
        )
        raise typer.Exit(code=1)


def _new_key(database_url: str, tenant: str, key_name: str | None) -> tuple[str, str]:
    """(tenant id, plaintext key)."""
    from store.auth import create_api_key
    from store.db import get_sessionmaker, session_scope

    with session_scope(get_sessionmaker(database_url)) as session:
        tenant_id = _tenant_id(session, tenant)
        _, plaintext = create_api_key(session, tenant_id=tenant_id, name=key_name)
    return tenant_id, plaintext


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="the account; created if it does not exist")],
    name: Annotated[str | None, typer.Option(help="a label for the key")] = None,
) -> None:
    """Print a new API key for TENANT. Only its hash is stored: keep the printed key."""
    if not tenant.strip():
        raise typer.BadParameter("must not be empty", param_hint="--tenant")
    settings = _settings()
    _require_migrated(settings.database_url)
    tenant_id, plaintext = _new_key(settings.database_url, tenant.strip(), name)
    typer.echo(f"tenant {tenant.strip()} ({tenant_id})", err=True)
    _say(plaintext)


def embedded_key(database_url: str, data_dir: Path) -> tuple[str, bool]:
    """The embedded service's key for tenant "default": the one saved in DATA_DIR/api-key if the
    database still accepts it, else a new one (saved there, mode 0600). Returns (key, created)."""
    from store.auth import verify_api_key
    from store.db import get_sessionmaker, session_scope

    path = data_dir / KEY_FILE
    if path.is_file():
        saved = path.read_text().strip()
        with session_scope(get_sessionmaker(database_url)) as session:
            if verify_api_key(session, key=saved) is not None:
                return saved, False
    _, plaintext = _new_key(database_url, DEFAULT_TENANT, "embedded")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(plaintext + "\n")
    path.chmod(0o600)  # O_CREAT's mode does not apply to an existing file
    return plaintext, True


# --- processes ---------------------------------------------------------------------------------


def worker_command(loglevel: str = "INFO", *, webhooks: bool = False) -> list[str]:
    """The training worker's command line, or (``webhooks``) the webhook deliverer's."""
    from worker import WEBHOOK_WORKER_ARGS, training_worker_args

    args = WEBHOOK_WORKER_ARGS if webhooks else training_worker_args()
    return [sys.executable, "-m", "celery", "-A", "worker.app", *args, "--loglevel", loglevel]


def api_command(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "api.main:create_app",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
    ]


def _child_environment(settings: Settings) -> dict[str, str]:
    """This process's environment over the values of ./.env (the precedence Settings applies)."""
    from dotenv import dotenv_values

    dotenv = Path(".env")
    values = dotenv_values(dotenv) if dotenv.is_file() else {}
    inherited = {key: value for key, value in values.items() if value is not None}
    # embedded: webhooks may call this machine (a receiver beside it), unless set otherwise
    embedded = {"WEBHOOK_ALLOWED_ADDRESSES": "loopback"}
    return {**embedded, **inherited, **os.environ, "DATA_DIR": str(settings.data_dir)}


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@app.command(rich_help_panel=SERVER_PANEL)
def up(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="where everything is kept (default: $DATA_DIR or ./ganforge-data)"),
    ] = None,
) -> None:
    """The embedded service: a SQLite database, a storage folder and a file-based queue under
    DATA_DIR, the API, one training worker and one webhook worker. Ctrl-C stops them (a running
    job is checkpointed and resumes at the next start)."""
    if data_dir is not None:
        os.environ["DATA_DIR"] = str(data_dir.expanduser().resolve())
    settings = _settings()
    settings.ensure_dirs()
    os.environ["DATA_DIR"] = str(settings.data_dir)  # the children see the same folder
    _migrate(settings.database_url)
    key, created = embedded_key(settings.database_url, settings.data_dir)

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    # The children run in DATA_DIR, with this folder's .env passed on. Own sessions: Ctrl-C in a
    # terminal reaches only this process, which then stops each child once.
    env, cwd = _child_environment(settings), settings.data_dir
    worker = subprocess.Popen(worker_command(), cwd=cwd, env=env, start_new_session=True)
    hooks = subprocess.Popen(
        worker_command("WARNING", webhooks=True), cwd=cwd, env=env, start_new_session=True
    )
    api = subprocess.Popen(api_command(host, port), cwd=cwd, env=env, start_new_session=True)
    children = {"worker": worker, "webhook worker": hooks, "api": api}
    url = f"http://{_url_host(host)}:{port}"
    failed: str | None = None
    try:
        deadline = time.monotonic() + API_START_TIMEOUT_S
        while not stop.is_set() and not _healthy(url):
            if api.poll() is not None or time.monotonic() > deadline:
                failed = "the API did not start"
                break
            stop.wait(0.2)  # polling interval
        if failed is None and not stop.is_set():
            _say(f"ganforge is up: {url}   (dashboard: {url}/, API docs: {url}/docs)")
            _say(f"API key: {key}")
            where = "new, saved" if created else "saved"
            _say(f"  ({where} in {settings.data_dir / KEY_FILE}, readable by you only)")
            _say(f"data: {settings.data_dir}")
            _say("Ctrl-C stops the API and the workers.")
        while failed is None and not stop.wait(0.5):
            for name, process in children.items():
                if process.poll() is not None:
                    failed = f"the {name} exited with code {process.returncode}"
                    break
    finally:
        _say("stopping...")
        _stop(api, API_STOP_TIMEOUT_S)
        _stop(hooks, API_STOP_TIMEOUT_S)
        _stop(worker, WORKER_STOP_TIMEOUT_S)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed is not None:
        typer.echo(f"error: {failed}", err=True)
        raise typer.Exit(code=1)
    _say("stopped.")


@app.command(rich_help_panel=SERVER_PANEL)
def api(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    proxy_headers: Annotated[
        bool, typer.Option(help="trust X-Forwarded-* from FORWARDED_ALLOW_IPS")
    ] = False,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="API processes sharing the port (one per core)")
    ] = 1,
) -> None:
    """Serve the HTTP API (production: DATABASE_URL, BROKER_URL, STORAGE_URL set)."""
    import uvicorn

    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=host,
        port=port,
        log_level=log_level,
        proxy_headers=proxy_headers,
        workers=workers,
    )


@app.command(rich_help_panel=SERVER_PANEL)
def worker(
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
    hostname: Annotated[str | None, typer.Option(help="Celery node name")] = None,
) -> None:
    """Run one training worker (one job at a time) on the queues its GPUs can serve: `train`,
    `train.cpu`, and `train.gpu.N` where it sees N GPUs (WORKER_GPUS overrides N)."""
    from worker import training_worker_args
    from worker.app import celery_app

    argv = [*training_worker_args(), "--loglevel", loglevel]
    if hostname:
        argv += ["--hostname", hostname]
    celery_app.worker_main(argv)


@app.command(rich_help_panel=SERVER_PANEL)
def webhooks(
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="deliveries tried at once (threads)")
    ] = 4,
) -> None:
    """Deliver webhooks from the `webhooks` queue (HTTP tries in threads; no GPU)."""
    from worker import WEBHOOK_WORKER_ARGS
    from worker.app import celery_app

    argv = [*WEBHOOK_WORKER_ARGS, "--loglevel", loglevel]
    argv[argv.index("--concurrency") + 1] = str(concurrency)
    celery_app.worker_main(argv)
