"""What the service benchmarks share: free ports, the local PostgreSQL, child processes."""

from __future__ import annotations

import socket
import subprocess

import psycopg

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_admin(sql: str) -> None:
    """Run ``sql`` as the local PostgreSQL's superuser (CREATE / DROP DATABASE)."""
    with psycopg.connect(**PG, dbname="postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql)  # type: ignore[arg-type]


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; nothing if it has already exited."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
