"""The dashboard: static ES modules in ``api/dashboard/`` served at ``/`` by the API itself, with
plotly.js from the pinned ``plotly`` wheel's package data. Every file goes out under a strict
Content-Security-Policy: scripts, styles, images and requests from this origin only.

The pages are public files; what they show comes from ``/v1`` with the API key a person pastes
once (sessionStorage, sent as ``Authorization: Bearer``)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DASHBOARD_DIR = Path(__file__).parent / "dashboard"
PLOTLY_JS = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
STATIC_PREFIX = "/ui"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
# /docs and /redoc (fastapi-offline's pages): their inline bootstrap script and styles, Redoc's
# blob: worker and data: images are allowed, any other origin is not (Redoc's footer links a logo
# on its CDN: the browser refuses it instead of asking the internet)
DOCS_PATHS = ("/docs", "/redoc")
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# the pages change with the code: revalidate each load (ETag); plotly changes only with its pin
PAGE_CACHE = {"Cache-Control": "no-cache"}
VENDOR_CACHE = {"Cache-Control": "public, max-age=86400"}

# plotly.js inserts its own style rules at load, which the CSP refuses ('self' styles only): the
# same rules, read from the pinned bundle, are served as a stylesheet instead
PLOTLY_RULES = re.compile(r"\w+=\{(\"X,X div\".*?)\};for\(")
PLOTLY_RULE = re.compile(r"\"([^\"]+)\":(?:'([^']*)'|\"([^\"]*)\")")
PLOTLY_SELECTOR_NAMES = {"X": ".js-plotly-plot .plotly", "Y": ".plotly-notifier"}

router = APIRouter(include_in_schema=False)


@cache
def plotly_css() -> str:
    """plotly.js's style rules (its ``plotcss``) as CSS text."""
    found = PLOTLY_RULES.search(PLOTLY_JS.read_text(encoding="utf-8"))
    if found is None:
        raise RuntimeError(f"plotly.js's style rules not found in {PLOTLY_JS}")
    rules = []
    for selector, quoted, double_quoted in PLOTLY_RULE.findall(found.group(1)):
        selector = re.sub("[XY]", lambda m: PLOTLY_SELECTOR_NAMES[m.group(0)], selector)
        rules.append(f"{selector}{{{quoted or double_quoted}}}")
    return "\n".join(rules) + "\n"


class DashboardFiles(StaticFiles):
    """StaticFiles whose answers carry the security headers."""

    def file_response(self, *args: Any, **kwargs: Any) -> Any:
        response = super().file_response(*args, **kwargs)
        response.headers.update(SECURITY_HEADERS | PAGE_CACHE)
        return response

    async def get_response(self, path: str, scope: Scope) -> Any:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


@router.get("/")
def dashboard() -> FileResponse:
    return FileResponse(DASHBOARD_DIR / "index.html", headers=SECURITY_HEADERS | PAGE_CACHE)


@router.get(f"{STATIC_PREFIX}/vendor/plotly.min.js")
def plotly_js() -> FileResponse:
    return FileResponse(
        PLOTLY_JS, media_type="text/javascript", headers=SECURITY_HEADERS | VENDOR_CACHE
    )


@router.get(f"{STATIC_PREFIX}/vendor/plotly.css")
def plotly_stylesheet() -> Response:
    return Response(plotly_css(), media_type="text/css", headers=SECURITY_HEADERS | VENDOR_CACHE)


class DocsPolicy:
    """ASGI middleware: the docs pages' Content-Security-Policy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in DOCS_PATHS:
            await self.app(scope, receive, send)
            return

        async def with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Content-Security-Policy"] = (
                    DOCS_CONTENT_SECURITY_POLICY
                )
            await send(message)

        await self.app(scope, receive, with_policy)


def install(app: FastAPI) -> None:
    """Serve the dashboard on ``app``: ``/`` and the files under ``/ui/``; the docs' CSP."""
    app.add_middleware(DocsPolicy)
    app.include_router(router)
    app.mount(STATIC_PREFIX, DashboardFiles(directory=DASHBOARD_DIR), name="dashboard")
