"""Retries of ganforge.Client (httpx.MockTransport, an injected sleep): 429/503 resent after
Retry-After or a doubling backoff, connection failures resent only when that is safe, and every
failure an APIError carrying the API's code, message and param."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from ganforge import APIConnectionError, APIError, AsyncClient, Client, RetryPolicy
from ganforge._http import retry_after_s

JOB = {
    "id": "job_1", "name": None, "status": "queued", "phase": "queued", "spec": {},
    "dataset_id": None, "latest_metrics": {}, "summary_metrics": None, "model_id": None,
    "attempt": 1, "cancel_requested": False, "pause_requested": False, "continued_from": None,
    "created_at": "2026-12-01T00:00:00Z", "started_at": None, "finished_at": None,
    "updated_at": "2026-12-01T00:00:00Z", "tags": [], "metadata": {},
    "progress": {"step": 0, "total": 10, "fraction": 0.0, "images_per_s": None, "eta_s": None},
    "error": None,
}  # fmt: skip


def error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": f"{code} happened", "param": None}}
    return httpx.Response(status, json=body, headers=headers)


class Script:
    """Answers requests from a list, recording each request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers, self.requests = list(answers), []  # type: ignore[var-annotated]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client_for(script: Script, slept: list[float], **policy: float) -> Client:
    retry = RetryPolicy(**policy) if policy else RetryPolicy()  # type: ignore[arg-type]
    return Client(
        "http://ganforge.test", "gf_key", transport=httpx.MockTransport(script), retry=retry,
        sleep=slept.append,
    )  # fmt: skip


def test_429_and_503_are_resent_after_their_retry_after() -> None:
    script = Script(
        error(429, "limit_exceeded", {"Retry-After": "7"}),
        error(503, "unavailable", {"Retry-After": "5"}),
        httpx.Response(200, json=JOB),
    )
    slept: list[float] = []
    job = client_for(script, slept).jobs.get("job_1")

    assert job.id == "job_1" and job.progress.total == 10
    assert slept == [7.0, 5.0]
    assert len(script.requests) == 3
    assert script.requests[0].headers["Authorization"] == "Bearer gf_key"


def test_without_retry_after_the_delay_doubles_up_to_the_cap() -> None:
    script = Script(*[error(503, "busy") for _ in range(4)], httpx.Response(200, json=JOB))
    slept: list[float] = []
    client_for(script, slept, backoff_s=1.0, max_backoff_s=3.0).jobs.get("job_1")

    assert slept == [1.0, 2.0, 3.0, 3.0]


def test_an_http_date_retry_after_counts_down_to_it() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    response = httpx.Response(503, headers={"Retry-After": format_datetime(when, usegmt=True)})
    assert 25 <= (retry_after_s(response) or 0) <= 30
    assert retry_after_s(httpx.Response(503, headers={"Retry-After": "soon"})) is None


def test_after_the_last_retry_the_api_error_is_raised_with_its_fields() -> None:
    script = Script(*[error(429, "limit_exceeded") for _ in range(3)])
    slept: list[float] = []
    with pytest.raises(APIError) as raised:
        client_for(script, slept, max_retries=2).jobs.create({"preset": "gan"})

    assert raised.value.status == 429 and raised.value.code == "limit_exceeded"
    assert raised.value.message == "limit_exceeded happened"
    assert len(slept) == 2 and len(script.requests) == 3
    keys = {request.headers["Idempotency-Key"] for request in script.requests}
    assert len(keys) == 1 and keys.pop().startswith("ganforge-py-")  # the same key every try


def test_other_errors_are_not_resent_and_carry_param() -> None:
    body = {"error": {"code": "invalid_spec", "message": "must be > 0", "param": "model.width"}}
    script = Script(httpx.Response(422, json=body))
    with pytest.raises(APIError) as raised:
        client_for(script, []).jobs.create({"model": {"width": 0}})

    assert (raised.value.status, raised.value.code, raised.value.param) == (
        422, "invalid_spec", "model.width",
    )  # fmt: skip
    assert str(raised.value) == "422 invalid_spec (model.width): must be > 0"
    assert len(script.requests) == 1


def test_a_non_json_error_still_becomes_an_api_error() -> None:
    script = Script(httpx.Response(502, text="Bad Gateway from the proxy"))
    with pytest.raises(APIError) as raised:
        client_for(script, []).jobs.get("job_1")
    assert raised.value.status == 502 and "Bad Gateway" in raised.value.message


@pytest.mark.parametrize(
    ("failure", "call", "resent"),
    [
        (httpx.ConnectError("refused"), lambda c: c.jobs.cancel("job_1"), True),  # never sent
        (httpx.ReadError("reset"), lambda c: c.jobs.get("job_1"), True),  # GET: idempotent
        (httpx.ReadError("reset"), lambda c: c.jobs.create({}), True),  # has an Idempotency-Key
        (httpx.ReadError("reset"), lambda c: c.jobs.cancel("job_1"), False),  # a plain POST
    ],
)
def test_connection_failures_are_resent_only_when_safe(
    failure: Exception, call: Callable[[Client], object], resent: bool
) -> None:
    script = Script(failure, httpx.Response(200, json=JOB))
    slept: list[float] = []
    client = client_for(script, slept, backoff_s=0.25)
    if resent:
        call(client)
        assert slept == [0.25] and len(script.requests) == 2
    else:
        with pytest.raises(APIConnectionError) as raised:
            call(client)
        assert raised.value.status is None and raised.value.code == "connection_error"
        assert slept == [] and len(script.requests) == 1


def test_a_service_that_stays_down_is_an_api_connection_error() -> None:
    script = Script(*[httpx.ConnectError("refused") for _ in range(3)])
    slept: list[float] = []
    with pytest.raises(APIConnectionError, match=r"cannot reach http://ganforge\.test"):
        client_for(script, slept, max_retries=2, backoff_s=1.0).jobs.get("job_1")
    assert slept == [1.0, 2.0]


def test_the_async_client_retries_the_same_way() -> None:
    script = Script(error(503, "unavailable", {"Retry-After": "2"}), httpx.Response(200, json=JOB))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> str:
        async with AsyncClient(
            "http://ganforge.test", "gf_key", transport=httpx.MockTransport(script), sleep=sleep
        ) as client:
            return (await client.jobs.get("job_1")).status

    assert asyncio.run(main()) == "queued"
    assert slept == [2.0]


def test_list_follows_the_cursor_through_every_page() -> None:
    pages = [
        {"data": [JOB | {"id": "job_3"}, JOB | {"id": "job_2"}], "has_more": True},
        {"data": [JOB | {"id": "job_1"}], "has_more": False},
    ]
    script = Script(*[httpx.Response(200, json=page) for page in pages])
    ids = [job.id for job in client_for(script, []).jobs.list(status="queued", tag=["a", "b"])]

    assert ids == ["job_3", "job_2", "job_1"]
    second = script.requests[1].url.params
    assert second["after"] == "job_2" and second["status"] == "queued"
    assert second.get_list("tag") == ["a", "b"]


def test_wait_follows_the_stream_and_returns_the_finished_job() -> None:
    finished = JOB | {"status": "succeeded", "model_id": "model_1", "phase": None}
    event = {"seq": 1, "step": None, "level": "info", "code": "started", "message": "go",
             "created_at": "2026-12-01T00:00:00Z"}  # fmt: skip
    stream = (
        "retry: 2000\n\n"
        f"event: event\nid: 1\ndata: {json.dumps(event)}\n\n"
        'event: progress\ndata: {"step":10,"total":10,"fraction":1.0,"images_per_s":5.0,'
        '"eta_s":null}\n\n'
        'event: status\ndata: {"id":"job_1","status":"succeeded","model_id":"model_1"}\n\n'
    )
    script = Script(
        httpx.Response(200, json=JOB),
        httpx.Response(200, text=stream, headers={"Content-Type": "text/event-stream"}),
        httpx.Response(200, json=finished),
    )
    seen: list[str] = []
    job = client_for(script, []).jobs.wait(
        "job_1", progress=False, on_message=lambda m: seen.append(m.event)
    )

    assert job.status == "succeeded" and job.model_id == "model_1"
    assert seen == ["event", "progress", "status"]
    assert script.requests[1].url.path == "/v1/jobs/job_1/stream"


def test_wait_falls_back_to_the_long_poll_when_the_stream_cannot_be_read() -> None:
    finished = JOB | {"status": "failed", "phase": None}
    script = Script(
        httpx.Response(200, json=JOB),
        *[httpx.ReadError("dropped") for _ in range(5)],  # the stream: every try drops
        httpx.Response(200, json=JOB),
        httpx.Response(200, json=finished),
    )
    job = client_for(script, [], max_retries=4).jobs.wait("job_1", progress=False)

    assert job.status == "failed"
    assert script.requests[-1].url.params["wait"] == "30.0"


@pytest.mark.parametrize("resource", ["datasets", "jobs", "models"])
def test_the_async_client_has_every_call_of_the_sync_one(resource: str) -> None:
    def calls(owner: object) -> set[str]:
        return {name for name in dir(owner) if not name.startswith("_")}

    sync = Client("http://ganforge.test", "gf_key")
    asynchronous = AsyncClient("http://ganforge.test", "gf_key")
    assert calls(getattr(sync, resource)) == calls(getattr(asynchronous, resource))
