"""``ganforge.Client``: the HTTP API from Python (httpx underneath, retries in ``_http``).

from ganforge import Client

client = Client()  # GANFORGE_URL / GANFORGE_API_KEY, else what `ganforge login` saved
job = client.jobs.create("spec.yaml")
job = client.jobs.wait(job.id)  # a progress bar until it finishes
images = client.models.sample(job.model_id, class_names=["Sneaker"], n=16, seed=3)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import httpx
from httpx_sse import EventSource

from ganforge import _shared
from ganforge._http import Call, RetryPolicy, Transport
from ganforge._progress import JobProgress
from ganforge._shared import LONG_POLL_S, PAGE_SIZE, STREAM_RECONNECTS, UNSET, Spec
from ganforge.config import resolve
from ganforge.errors import APIConnectionError, APIError, JobStreamLost
from ganforge.types import (
    BuiltinDataset,
    Checkpoint,
    Dataset,
    Event,
    Job,
    Model,
    Sample,
    Scores,
    StreamMessage,
    Usage,
    Webhook,
    WebhookDelivery,
)

if TYPE_CHECKING:
    import numpy as np

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
UPLOAD_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
STREAM_TIMEOUT = httpx.Timeout(10.0, read=60.0)  # the API sends a keep-alive every 15 s
LONG_POLL_TIMEOUT = httpx.Timeout(10.0, read=LONG_POLL_S + 30.0)
USER_AGENT = "ganforge-python"


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


class Client:
    """A connection to a ganforge service. ``base_url`` and ``api_key`` default to
    ``GANFORGE_URL`` / ``GANFORGE_API_KEY``, then to the ``ganforge login`` file. ``transport``
    (an ``httpx`` transport, e.g. ``MockTransport``) and ``sleep`` are for tests."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        found = resolve(base_url, api_key)
        self.base_url, self.api_key = found.url or "", found.api_key
        self._http = httpx.Client(
            base_url=self.base_url, headers=_headers(self.api_key), timeout=timeout,
            transport=transport,
        )  # fmt: skip
        self._transport = Transport(self._http, retry, sleep)
        self.sleep = sleep
        self.datasets = Datasets(self)
        self.jobs = Jobs(self)
        self.models = Models(self)

    def usage(self) -> Usage:
        """What this account stores, by kind, and the worker time its jobs took."""
        return Usage.model_validate(self.json(Call("GET", "/v1/usage")))

    def default_webhook(self) -> Webhook | None:
        """The webhook of this account's submissions that carry none (None: not set)."""
        try:
            return Webhook.model_validate(self.json(Call("GET", "/v1/webhook")))
        except APIError as error:
            if error.status == 404:
                return None
            raise

    def set_default_webhook(
        self, url: str, *, events: Sequence[str] | None = None, secret: str | None = None
    ) -> Webhook:
        body = _shared.webhook_body(url, events, secret)
        return Webhook.model_validate(self.json(Call("PUT", "/v1/webhook", json=body)))

    def delete_default_webhook(self) -> None:
        self.request(Call("DELETE", "/v1/webhook"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def request(self, call: Call, *, stream: bool = False) -> httpx.Response:
        return self._transport.send(call, stream=stream)

    def json(self, call: Call) -> Any:
        return self.request(call).json()

    def pages(self, path: str, params: Mapping[str, Any], cursor: str) -> Iterator[dict[str, Any]]:
        """Every item of a cursor-paged list (``after`` = the last item's ``cursor`` field)."""
        after: Any = None
        while True:
            query = {**params, "limit": PAGE_SIZE} | ({"after": after} if after is not None else {})
            page = self.json(Call("GET", path, params=query))
            yield from page["data"]
            if not page["has_more"] or not page["data"]:
                return
            after = page["data"][-1][cursor]

    def download(self, call: Call, path: str | Path) -> Path:
        """The body of ``call`` streamed into the file ``path``."""
        target = Path(path).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        response = self.request(call, stream=True)
        try:
            with target.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        except httpx.TransportError as error:
            raise APIConnectionError(f"the download of {call.path} broke off: {error}") from error
        finally:
            response.close()
        return target


class Datasets:
    def __init__(self, client: Client) -> None:
        self._client = client

    def upload(
        self,
        path: str | Path,
        name: str | None = None,
        *,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Dataset:
        """An ``.npz`` pack, a ``.zip`` of class folders, or a folder of class folders of
        images (zipped on the fly)."""
        with _shared.dataset_upload(path, name, tags, metadata) as upload:
            call = Call("POST", "/v1/datasets", upload=upload, timeout=UPLOAD_TIMEOUT)
            return Dataset.model_validate(self._client.json(call))

    def list(self, tag: str | Sequence[str] | None = None) -> list[Dataset]:
        """This account's uploads, newest first (carrying every ``tag``)."""
        rows = self._client.pages("/v1/datasets", {"tag": _shared.tags_param(tag)}, "id")
        return [Dataset.model_validate(row) for row in rows]

    def update(
        self,
        dataset_id: str,
        *,
        name: str | None = UNSET,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, str | None] | None = None,
    ) -> Dataset:
        """``PATCH``, as ``jobs.update`` (a dataset's name cannot be cleared)."""
        body = _shared.labels_patch(name, tags, metadata)
        call = Call("PATCH", f"/v1/datasets/{dataset_id}", json=body)
        return Dataset.model_validate(self._client.json(call))

    def builtins(self) -> list[BuiltinDataset]:
        page = self._client.json(Call("GET", "/v1/datasets", params={"builtin": "true"}))
        return [BuiltinDataset.model_validate(row) for row in page["data"]]

    def get(self, dataset_id: str) -> Dataset:
        return Dataset.model_validate(self._client.json(Call("GET", f"/v1/datasets/{dataset_id}")))

    def delete(self, dataset_id: str) -> None:
        self._client.request(Call("DELETE", f"/v1/datasets/{dataset_id}"))


class Jobs:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, spec: Spec, idempotency_key: str | None = None) -> Job:
        """Submit a spec (a dict, or a YAML/JSON file). A generated ``Idempotency-Key`` makes the
        retries of this POST safe: the API answers them with the job it already created."""
        key = idempotency_key or _shared.new_idempotency_key()
        call = Call(
            "POST", "/v1/jobs", json=_shared.load_spec(spec), headers={"Idempotency-Key": key},
            idempotent=True,
        )  # fmt: skip
        return Job.model_validate(self._client.json(call))

    def get(self, job_id: str, *, wait: float | None = None) -> Job:
        """The job; with ``wait`` (seconds, at most 60), a long poll answering as soon as its
        status changes."""
        if wait is None:
            return Job.model_validate(self._client.json(Call("GET", f"/v1/jobs/{job_id}")))
        call = Call("GET", f"/v1/jobs/{job_id}", params={"wait": wait}, timeout=LONG_POLL_TIMEOUT)
        return Job.model_validate(self._client.json(call))

    def list(
        self, status: str | None = None, tag: str | Sequence[str] | None = None
    ) -> Iterator[Job]:
        """Every job (newest first), page after page; ``tag``: only jobs carrying all of them."""
        params: dict[str, Any] = {"tag": _shared.tags_param(tag)}
        if status is not None:
            params["status"] = status
        for row in self._client.pages("/v1/jobs", params, "id"):
            yield Job.model_validate(row)

    def _post(self, job_id: str, action: str, body: Any = None) -> Job:
        return Job.model_validate(
            self._client.json(Call("POST", f"/v1/jobs/{job_id}/{action}", json=body))
        )

    def cancel(self, job_id: str) -> Job:
        return self._post(job_id, "cancel")

    def pause(self, job_id: str) -> Job:
        """A queued job pauses at once, a running one at its next heartbeat (at a checkpoint)."""
        return self._post(job_id, "pause")

    def resume(self, job_id: str) -> Job:
        return self._post(job_id, "resume")

    def continue_(self, job_id: str, steps: int) -> Job:
        """A **new** job going on from this finished job's newest checkpoint to ``steps`` in all
        (``POST /v1/jobs/{id}/continue``; named with ``_`` because ``continue`` is a keyword)."""
        return self._post(job_id, "continue", {"steps": steps})

    def delete(self, job_id: str) -> None:
        """A finished or paused job, with its events, metrics, samples and checkpoints."""
        self._client.request(Call("DELETE", f"/v1/jobs/{job_id}"))

    def update(
        self,
        job_id: str,
        *,
        name: str | None = UNSET,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, str | None] | None = None,
    ) -> Job:
        """``PATCH``: ``name=None`` clears the name; ``tags`` replaces them; ``metadata`` merges,
        a None value removing its key. What is left out stays."""
        body = _shared.labels_patch(name, tags, metadata)
        return Job.model_validate(self._client.json(Call("PATCH", f"/v1/jobs/{job_id}", json=body)))

    def events(self, job_id: str) -> list[Event]:
        """The whole event log, oldest first."""
        rows = self._client.pages(f"/v1/jobs/{job_id}/events", {}, "seq")
        return [Event.model_validate(row) for row in rows]

    def samples(self, job_id: str) -> list[Sample]:
        rows = self._client.pages(f"/v1/jobs/{job_id}/samples", {}, "step")
        return [Sample.model_validate(row) for row in rows]

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        rows = self._client.pages(f"/v1/jobs/{job_id}/checkpoints", {}, "step")
        return [Checkpoint.model_validate(row) for row in rows]

    def metrics(
        self, job_id: str, name: str | Sequence[str] | None = None
    ) -> dict[str, list[tuple[int, float | None]]]:
        """Every logged point: ``{"d_loss": [(step, value), ...]}``, steps ascending, None for
        NaN/inf; ``name`` picks series."""
        series: dict[str, list[tuple[int, float | None]]] = {}
        params: dict[str, Any] = {"name": _shared.tags_param(name), "limit": 10_000}
        while True:
            page = self._client.json(Call("GET", f"/v1/jobs/{job_id}/metrics", params=params))
            _shared.merge_series(series, page["data"])
            if not page["has_more"] or page["last_step"] is None:
                return series
            params["after_step"] = page["last_step"]

    def webhook_deliveries(self, job_id: str) -> list[WebhookDelivery]:
        """Every notification sent to the job's webhook, oldest first, with its tries."""
        rows = self._client.pages(f"/v1/jobs/{job_id}/webhook_deliveries", {}, "id")
        return [WebhookDelivery.model_validate(row) for row in rows]

    def metrics_csv(self, job_id: str, path: str | Path) -> Path:
        """``step,<metric>,...``, a row a logged step, into ``path``."""
        return self._client.download(Call("GET", f"/v1/jobs/{job_id}/metrics.csv"), path)

    def tensorboard(self, job_id: str, path: str | Path) -> Path:
        """A zip of the run's TensorBoard event files into ``path``."""
        call = Call("GET", f"/v1/jobs/{job_id}/tensorboard", timeout=UPLOAD_TIMEOUT)
        return self._client.download(call, path)

    def stream(self, job_id: str, *, after: int | None = None) -> Iterator[StreamMessage]:
        """The job's Server-Sent Events (``event``, ``progress``, ``metrics``, ``status``) until
        the final ``status``. A dropped connection is resumed after the last event seen
        (``Last-Event-ID``), up to 3 times in a row; then :class:`APIConnectionError`."""
        last_seq, failures = after, 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_seq is not None:
                headers["Last-Event-ID"] = str(last_seq)
            call = Call("GET", f"/v1/jobs/{job_id}/stream", headers=headers, timeout=STREAM_TIMEOUT)
            response = self._client.request(call, stream=True)
            try:
                for sse in EventSource(response).iter_sse():
                    if not sse.data:  # a `retry:` line alone
                        continue
                    message = _shared.stream_message(sse.event, sse.data, sse.id)
                    failures = 0
                    if message.event == "event" and message.id is not None:
                        last_seq = int(message.id)
                    yield message
                    if _shared.is_final(message):
                        return
                return  # the server closed the stream without a final status
            except httpx.TransportError as error:
                failures += 1
                if failures > STREAM_RECONNECTS:
                    raise APIConnectionError(
                        f"the stream of {job_id} broke off: {error}"
                    ) from error
                self._client.sleep(min(2.0**failures, 10.0))
            finally:
                response.close()

    def wait(
        self,
        job_id: str,
        progress: bool = True,
        *,
        timeout: float | None = None,
        on_message: Callable[[StreamMessage], None] | None = None,
    ) -> Job:
        """Block until the job is succeeded, failed or cancelled and return it. ``progress``: a
        rich bar on stderr. Follows the event stream (``on_message`` sees every message) and, if
        the stream cannot be followed, long-polls ``GET /v1/jobs/{id}?wait=``. ``timeout``
        (seconds) raises :class:`APIError` ``code="timeout"``; a paused job is waited for."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with JobProgress(job_id, enabled=progress) as bar:
            bar.job(self.get(job_id))
            try:
                for message in self.stream(job_id):
                    bar.message(message)
                    if on_message is not None:
                        on_message(message)
                    _check_deadline(job_id, deadline)
            except APIConnectionError:
                pass  # the long poll below takes over
            except APIError as error:
                if error.status is not None and error.status < 500:
                    raise
            job = self.get(job_id)
            bar.job(job)
            failures = 0
            while not job.finished:
                _check_deadline(job_id, deadline)
                try:
                    job = self.get(job_id, wait=_poll_s(deadline))
                    failures = 0
                except APIConnectionError as error:
                    failures += 1
                    if failures > STREAM_RECONNECTS:
                        raise JobStreamLost(
                            f"lost {job_id}: {error}", code="stream_lost"
                        ) from error
                    self._client.sleep(min(2.0**failures, 10.0))
                    continue
                bar.job(job)
            return job


def _poll_s(deadline: float | None) -> float:
    if deadline is None:
        return LONG_POLL_S
    return max(0.0, min(LONG_POLL_S, deadline - time.monotonic()))


def _check_deadline(job_id: str, deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise APIError(f"{job_id} did not finish in time", code="timeout")


class Models:
    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self, tag: str | Sequence[str] | None = None) -> list[Model]:
        rows = self._client.pages("/v1/models", {"tag": _shared.tags_param(tag)}, "id")
        return [Model.model_validate(row) for row in rows]

    def get(self, model_id: str) -> Model:
        return Model.model_validate(self._client.json(Call("GET", f"/v1/models/{model_id}")))

    def update(
        self,
        model_id: str,
        *,
        name: str | None = UNSET,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, str | None] | None = None,
    ) -> Model:
        """As :meth:`Jobs.update`."""
        body = _shared.labels_patch(name, tags, metadata)
        call = Call("PATCH", f"/v1/models/{model_id}", json=body)
        return Model.model_validate(self._client.json(call))

    def delete(self, model_id: str) -> None:
        self._client.request(Call("DELETE", f"/v1/models/{model_id}"))

    def _samples(self, model_id: str, body: dict[str, Any]) -> bytes:
        # the same request always gives the same bytes, so resending it is safe
        call = Call("POST", f"/v1/models/{model_id}/samples", json=body, idempotent=True)
        return self._client.request(call).content

    def sample(
        self,
        model_id: str,
        labels: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
        per_class: int | None = None,
        n: int | None = None,
        seed: int | None = None,
        truncation: float | None = None,
    ) -> np.ndarray:
        """Generated samples: uint8 ``(N, H, W[, C])`` images, or float32 ``(N, 2)`` points for
        a 2-D model. Give at most one of ``labels``, ``class_names``, ``per_class``."""
        body = _shared.sample_body(
            format="npy", labels=labels, class_names=class_names, per_class=per_class, n=n,
            seed=seed, truncation=truncation,
        )  # fmt: skip
        return _shared.read_npy(self._samples(model_id, body))

    def sample_grid(
        self,
        model_id: str,
        labels: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
        per_class: int | None = None,
        n: int | None = None,
        seed: int | None = None,
        truncation: float | None = None,
    ) -> bytes:
        """The same samples as one PNG grid (one row per class with ``per_class``)."""
        body = _shared.sample_body(
            format="png_grid", labels=labels, class_names=class_names, per_class=per_class, n=n,
            seed=seed, truncation=truncation,
        )  # fmt: skip
        return self._samples(model_id, body)

    def translate(self, model_id: str, inputs: str | Path | np.ndarray) -> np.ndarray:
        """Translations by a model trained with task 'translation': uint8 ``(N, H, W[, C])``.
        ``inputs``: a PNG/JPEG/.npy path or a uint8 array ``(H, W[, C])`` or ``(N, H, W[, C])``;
        the same inputs always give the same outputs."""
        with _shared.translation_upload(inputs, "npy") as upload:
            # the same inputs always give the same bytes, so resending is safe
            call = Call(
                "POST",
                f"/v1/models/{model_id}/translate",
                upload=upload,
                timeout=UPLOAD_TIMEOUT,
                idempotent=True,
            )
            return _shared.read_npy((self._client.request(call)).content)

    def translate_grid(self, model_id: str, inputs: str | Path | np.ndarray) -> bytes:
        """The same translations as one PNG (the image, or a grid of a batch)."""
        with _shared.translation_upload(inputs, "png_grid") as upload:
            call = Call("POST", f"/v1/models/{model_id}/translate", upload=upload,
                        timeout=UPLOAD_TIMEOUT, idempotent=True)  # fmt: skip
            return self._client.request(call).content

    def _interpolation(self, model_id: str, body: dict[str, Any]) -> bytes:
        # the same request always gives the same bytes, so resending it is safe
        call = Call("POST", f"/v1/models/{model_id}/interpolations", json=body, idempotent=True)
        return self._client.request(call).content

    def interpolate(
        self,
        model_id: str,
        *,
        from_seed: int = 0,
        to_seed: int | None = None,
        from_class: int | str | None = None,
        to_class: int | str | None = None,
        frames: int = 8,
        truncation: float | None = None,
    ) -> np.ndarray:
        """A latent walk of ``frames`` (2 to 64) samples: uint8 ``(F, H, W[, C])`` images or
        float32 ``(F, 2)`` points. ``to_seed`` slerps between two seeds' z; ``to_class`` (a
        name or an index) moves the class embedding at fixed z; both move both."""
        body = _shared.interpolation_body(
            format="npy", from_seed=from_seed, to_seed=to_seed, from_class=from_class,
            to_class=to_class, frames=frames, truncation=truncation,
        )  # fmt: skip
        return _shared.read_npy(self._interpolation(model_id, body))

    def interpolation_image(
        self,
        model_id: str,
        *,
        from_seed: int = 0,
        to_seed: int | None = None,
        from_class: int | str | None = None,
        to_class: int | str | None = None,
        frames: int = 8,
        truncation: float | None = None,
        format: Literal["png_strip", "gif"] = "png_strip",
    ) -> bytes:
        """The same walk as a PNG strip (the frames in one row) or an animated GIF (image
        models only)."""
        body = _shared.interpolation_body(
            format=format, from_seed=from_seed, to_seed=to_seed, from_class=from_class,
            to_class=to_class, frames=frames, truncation=truncation,
        )  # fmt: skip
        return self._interpolation(model_id, body)

    def materialize_dataset(
        self,
        model_id: str,
        per_class: int,
        *,
        seed: int = 0,
        truncation: float | None = None,
        name: str | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Dataset:
        """Store ``per_class`` generated images of every class as a new dataset of this account
        (conditional image models), usable in a spec as ``{"dataset": {"id": ...}}``."""
        body = _shared.synthetic_dataset_body(
            per_class=per_class, seed=seed, truncation=truncation, name=name, tags=tags,
            metadata=metadata,
        )  # fmt: skip
        call = Call("POST", f"/v1/models/{model_id}/datasets", json=body)
        return Dataset.model_validate(self._client.json(call))

    def scores(
        self,
        model_id: str,
        images: np.ndarray | str | Path,
        *,
        method: str = "both",
        labels: Sequence[int] | np.ndarray | None = None,
        seed: int | None = None,
        steps: int | None = None,
        starts: int | None = None,
        distance: str | None = None,
        feature_weight: float | None = None,
    ) -> Scores:
        """Anomaly scores, one per image (higher = more anomalous), by ``method``:
        ``"discriminator"`` (-D(x), for models that keep their discriminator),
        ``"reconstruction"`` (the AnoGAN latent-search residual; ``seed``, ``steps``,
        ``starts``, ``distance``, ``feature_weight`` tune its search) or ``"both"``.
        ``images``: a uint8 array (N, H, W[, C]) of the model's image shape, with optional
        ``labels`` (the class to score each as, for a conditional model), or the path of an
        ``.npz``/``.zip`` of images. At most 256 images a call (MAX_SCORE_IMAGES)."""
        fields = _shared.score_fields(method, seed, steps, starts, distance, feature_weight)
        with _shared.scores_upload(images, labels, fields) as upload:
            call = Call("POST", f"/v1/models/{model_id}/scores", upload=upload,
                        timeout=UPLOAD_TIMEOUT, idempotent=True)  # fmt: skip
            return Scores.model_validate(self._client.json(call))

    def export(self, model_id: str, path: str | Path) -> Path:
        """The model's weights, config and spec: a ``.zip`` path gets the zip, any other path
        becomes a folder that ``python -m gan_engine sample`` reads."""
        content = self._client.request(Call("GET", f"/v1/models/{model_id}/export")).content
        return _shared.save_export(content, path)
