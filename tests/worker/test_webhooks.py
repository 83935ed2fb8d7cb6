"""Webhooks end to end on the embedded configuration: a job trained in-process, its deliveries
tried against a real HTTP receiver on 127.0.0.1 (signatures, the event filter, retries, a
timeout, refused addresses), and the progress throttle."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from store import webhooks
from store.db import session_scope
from store.jobs import claim_job, create_job, heartbeat, record_event
from store.models import WebhookDelivery
from store.settings import Settings
from store.webhooks import AddressPolicy, address_problem, verify
from tests.worker.conftest import Service, tiny_spec
from worker.runner import run_job
from worker.webhooks import deliver

SECRET = "whsec-test-0123456789abcdef"


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records each POST and answers as told."""

    fail_first: int = 0  # answer 500 to this many requests first
    endless_body: bool = False  # answer 200 with a body that never ends
    hang_first_s: float = 0.0  # sleep this long before answering the first request
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                n = len(receiver.requests)
                receiver.requests.append((dict(self.headers), body))
                if n == 0 and receiver.hang_first_s:
                    time.sleep(receiver.hang_first_s)
                if receiver.endless_body:
                    self.send_response(200)
                    self.send_header("Content-Length", str(10**12))
                    self.end_headers()
                    self.wfile.write(b"x" * 1024)
                    self.wfile.flush()
                    time.sleep(3)
                    return
                self.send_response(500 if n < receiver.fail_first else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), receiver.handler())
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Delivery ids committed (instead of Celery messages), in order."""
    ids: list[str] = []
    monkeypatch.setattr(webhooks, "send_committed", ids.extend)
    return ids


def webhook_settings(service: Service, **overrides: Any) -> Settings:
    values = {"webhook_allowed_addresses": AddressPolicy.LOOPBACK, "webhook_backoff_s": 0.01,
              "webhook_timeout_s": 2.0} | overrides  # fmt: skip
    return service.settings.model_copy(update=values)


def deliver_all(settings: Settings, service: Service, queue: list[str]) -> list[float]:
    """Try every queued delivery, and each retry it schedules, until none is left; returns the
    waits the retries were scheduled with."""
    waits: list[float] = []

    def schedule(delivery_id: str, wait_s: float) -> None:
        waits.append(wait_s)
        queue.append(delivery_id)

    while queue:
        deliver(queue.pop(0), settings=settings, sessions=service.sessions, schedule=schedule)
    return waits


def submit(service: Service, url: str, events: list[str], **spec: Any) -> str:
    with session_scope(service.sessions) as session:
        job, _ = create_job(
            session, tenant_id=service.tenant_id, spec=tiny_spec(**spec),
            webhook={"url": url, "events": events, "secret": SECRET},
        )  # fmt: skip
        return job.id


def deliveries(service: Service, job_id: str) -> list[WebhookDelivery]:
    return service.rows(WebhookDelivery, job_id, WebhookDelivery.created_at)


def test_a_trained_job_tells_its_receiver_signed_and_filtered(
    embedded: Service, receiver: Receiver, sent: list[str]
) -> None:
    job_id = submit(embedded, receiver.url, ["started", "completed"], steps=20)
    assert run_job(job_id, settings=embedded.settings).status == "succeeded"

    deliver_all(webhook_settings(embedded), embedded, sent)

    bodies = [json.loads(body) for _, body in receiver.requests]
    assert [b["type"] for b in bodies] == ["job.started", "job.completed"]  # no progress
    completed = bodies[-1]
    assert completed["job"]["id"] == job_id and completed["job"]["status"] == "succeeded"
    assert completed["job"]["model_id"] and completed["event"]["code"] == "status"
    for headers, body in receiver.requests:
        assert verify(SECRET, headers["Ganforge-Signature"], body)
        assert not verify("another-secret-0123456789", headers["Ganforge-Signature"], body)
        assert headers["Ganforge-Delivery"] == json.loads(body)["id"]
    rows = deliveries(embedded, job_id)
    assert [(r.event, r.status, len(r.attempts)) for r in rows] == [
        ("started", "delivered", 1), ("completed", "delivered", 1),
    ]  # fmt: skip
    assert rows[0].attempts[0]["status_code"] == 204


def test_a_receiver_that_fails_twice_gets_the_third_try(
    embedded: Service, receiver: Receiver, sent: list[str]
) -> None:
    receiver.fail_first = 2
    job_id = submit(embedded, receiver.url, ["completed"], steps=10)
    run_job(job_id, settings=embedded.settings)

    waits = deliver_all(webhook_settings(embedded, webhook_backoff_s=0.01), embedded, sent)

    assert waits == [0.01, 0.02]  # exponential backoff
    [row] = deliveries(embedded, job_id)
    assert row.status == "delivered"
    assert [a["status_code"] for a in row.attempts] == [500, 500, 204]
    assert [a["error"] for a in row.attempts] == ["answered 500", "answered 500", None]
    ids = {json.loads(body)["id"] for _, body in receiver.requests}
    assert ids == {row.id}  # one delivery id on every try: receivers can be idempotent


def test_tries_end_after_max_attempts(
    embedded: Service, receiver: Receiver, sent: list[str]
) -> None:
    receiver.fail_first = 100
    job_id = submit(embedded, receiver.url, ["completed"], steps=10)
    run_job(job_id, settings=embedded.settings)

    deliver_all(webhook_settings(embedded, webhook_max_attempts=3), embedded, sent)

    [row] = deliveries(embedded, job_id)
    assert (row.status, len(row.attempts), row.next_attempt_at) == ("failed", 3, None)


def test_a_hanging_receiver_is_cut_off_by_the_timeout(
    embedded: Service, receiver: Receiver, sent: list[str]
) -> None:
    receiver.hang_first_s = 3.0
    job_id = submit(embedded, receiver.url, ["completed"], steps=10)
    run_job(job_id, settings=embedded.settings)

    started = time.monotonic()
    deliver_all(webhook_settings(embedded, webhook_timeout_s=0.3), embedded, sent)

    assert time.monotonic() - started < 2.5  # not the receiver's 3 s
    [row] = deliveries(embedded, job_id)
    assert row.attempts[0]["error"] == "no answer within 0.3 s"
    assert row.attempts[0]["status_code"] is None
    assert (row.status, len(row.attempts)) == ("delivered", 2)


def test_a_refused_address_fails_at_once(embedded: Service, sent: list[str]) -> None:
    job_id = submit(embedded, "https://hooks.example.test/x", ["completed"], steps=10)
    run_job(job_id, settings=embedded.settings)

    settings = webhook_settings(embedded, webhook_allowed_addresses=AddressPolicy.PUBLIC)
    [delivery_id] = sent
    status = deliver(delivery_id, settings=settings, sessions=embedded.sessions,
                     schedule=lambda *_: pytest.fail("no retry"),
                     resolve=lambda host: ["10.1.2.3"])  # fmt: skip

    assert status == "failed"
    [row] = deliveries(embedded, job_id)
    assert "10.1.2.3, a non-public address" in row.attempts[0]["error"]


def test_progress_is_told_at_most_every_interval_and_warnings_as_they_come(
    embedded: Service, sent: list[str]
) -> None:
    job_id = submit(embedded, "http://127.0.0.1:9/hook", ["progress", "warning"], steps=10)
    with session_scope(embedded.sessions) as session:
        claim_job(session, job_id=job_id, worker_id="w", lease_s=30)
    for step in (1, 2, 3):
        with session_scope(embedded.sessions) as session:
            heartbeat(session, job_id=job_id, worker_id="w", lease_s=30, step=step,
                      progress_interval_s=60)  # fmt: skip
    with session_scope(embedded.sessions) as session:
        record_event(session, job_id=job_id, code="mode_collapse", message="m", level="warning")
        record_event(session, job_id=job_id, code="checkpoint", message="c")

    rows = deliveries(embedded, job_id)
    assert [r.event for r in rows] == ["progress", "warning"]  # not started: not subscribed
    assert rows[0].payload["job"]["step"] == 1
    assert rows[1].payload["event"]["code"] == "mode_collapse"
    assert sent == [r.id for r in rows]
    with session_scope(embedded.sessions) as session:
        heartbeat(session, job_id=job_id, worker_id="w", lease_s=30, step=4,
                  progress_interval_s=0)  # fmt: skip
        assert len(session.scalars(select(WebhookDelivery.id)).all()) == 3


def test_nothing_is_sent_for_a_rolled_back_change(embedded: Service, sent: list[str]) -> None:
    job_id = submit(embedded, "http://127.0.0.1:9/hook", ["warning"], steps=10)
    with pytest.raises(RuntimeError), session_scope(embedded.sessions) as session:
        record_event(session, job_id=job_id, code="x", message="m", level="warning")
        raise RuntimeError("the change fails")
    assert sent == [] and deliveries(embedded, job_id) == []


def test_a_receivers_answer_body_is_never_read(
    embedded: Service, receiver: Receiver, sent: list[str]
) -> None:
    receiver.endless_body = True  # a terabyte announced, then silence
    job_id = submit(embedded, receiver.url, ["completed"], steps=10)
    run_job(job_id, settings=embedded.settings)

    deliver_all(webhook_settings(embedded, webhook_timeout_s=0.5), embedded, sent)

    [row] = deliveries(embedded, job_id)
    assert (row.status, row.attempts[0]["status_code"]) == ("delivered", 200)


def test_a_name_idna_refuses_is_a_refusal_not_a_crash() -> None:
    def refuse(host: str) -> list[str]:
        raise UnicodeError("label too long")

    problem = address_problem("x" * 70 + ".example", AddressPolicy.PUBLIC, resolve=refuse)
    assert problem is not None and "does not resolve" in problem
