"""The ``ganforge`` typer app and the options every client command reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

SERVER_PANEL = "Server (run the service)"
CLIENT_PANEL = "Client (talk to a service)"

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="GAN training as a service. Server: `ganforge up` runs it all on this machine; `ganforge "
    "api` and `ganforge worker` run one process each. Client: `ganforge login URL --key KEY`, "
    "then `ganforge submit spec.yaml --follow`, `ganforge sample MODEL --out grid.png`.",
)


@dataclass
class Connection:
    """``--url`` / ``--api-key`` as given (None: the environment, then the login file)."""

    url: str | None = None
    api_key: str | None = None


@app.callback()
def options(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(help="the service's URL (default: $GANFORGE_URL, then `ganforge login`)"),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(help="an API key (default: $GANFORGE_API_KEY, then `ganforge login`)"),
    ] = None,
) -> None:
    ctx.obj = Connection(url, api_key)
