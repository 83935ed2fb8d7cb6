"""The ``ganforge`` command: the server commands (``ganforge.cli.server``) and the client
commands (``ganforge.cli.client``) in one typer app."""

from ganforge.cli import client, server  # noqa: F401  (each registers its commands on ``app``)
from ganforge.cli.app import app

__all__ = ["app"]
