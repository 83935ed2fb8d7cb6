"""JSON request bodies, read strictly: a duplicate key, ``NaN``/``Infinity`` (or a number too large
to be finite), text that is not UTF-8 or nesting too deep to parse is a malformed body (400
``invalid_json``), never a value silently chosen for the client.

Routers use ``StrictJSONRoute`` (FastAPI's documented custom-route hook); the body's size is
bounded before it is read, by the app's ``max_body_size``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class _Malformed(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Malformed(f"duplicate key {key[:64]!r}")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise _Malformed(f"{name} is not a JSON number; send a finite number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Malformed(f"{text[:32]} is out of range for a number")
    return value


def loads_strict(body: bytes) -> Any:
    """``json.loads`` that refuses what RFC 8259 leaves open or what would hurt the service."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise json.JSONDecodeError("the body is not UTF-8", "", error.start) from None
    try:
        return json.loads(
            text, object_pairs_hook=_object, parse_constant=_refuse_constant, parse_float=_finite
        )
    except json.JSONDecodeError:
        raise
    except ValueError as error:  # ours, or an integer of more digits than Python converts
        raise json.JSONDecodeError(str(error)[:200], "", 0) from None
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            if request.method in ("GET", "HEAD", "DELETE"):  # no body to read
                return await handler(request)
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
