"""``ganforge.AsyncClient``: :class:`ganforge.Client` for asyncio, method for method (``await``
each call; ``jobs.list`` and ``jobs.stream`` are async iterators; ``jobs.wait`` shows no bar)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import httpx
from httpx_sse import EventSource

from ganforge import _shared
from ganforge._http import AsyncTransport, Call, RetryPolicy
from ganforge._shared import PAGE_SIZE, STREAM_RECONNECTS, UNSET, Spec
from ganforge.client import (
    DEFAULT_TIMEOUT,
    LONG_POLL_TIMEOUT,
    STREAM_TIMEOUT,
    UPLOAD_TIMEOUT,
    _check_deadline,
    _headers,
    _poll_s,
)
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


class AsyncClient:
    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        found = resolve(base_url, api_key)
        self.base_url, self.api_key = found.url or "", found.api_key
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=_headers(self.api_key), timeout=timeout,
            transport=transport,
        )  # fmt: skip
        self._transport = AsyncTransport(self._http, retry, sleep)
        self.sleep = sleep
        self.datasets = AsyncDatasets(self)
        self.jobs = AsyncJobs(self)
        self.models = AsyncModels(self)

    async def usage(self) -> Usage:
        return Usage.model_validate(await self.json(Call("GET", "/v1/usage")))

    async def default_webhook(self) -> Webhook | None:
        try:
            return Webhook.model_validate(await self.json(Call("GET", "/v1/webhook")))
        except APIError as error:
            if error.status == 404:
                return None
            raise

    async def set_default_webhook(
        self, url: str, *, events: Sequence[str] | None = None, secret: str | None = None
    ) -> Webhook:
        body = _shared.webhook_body(url, events, secret)
        return Webhook.model_validate(await self.json(Call("PUT", "/v1/webhook", json=body)))

    async def delete_default_webhook(self) -> None:
        await self.request(Call("DELETE", "/v1/webhook"))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def request(self, call: Call, *, stream: bool = False) -> httpx.Response:
        return await self._transport.send(call, stream=stream)

    async def json(self, call: Call) -> Any:
        return (await self.request(call)).json()

    async def pages(
        self, path: str, params: Mapping[str, Any], cursor: str
    ) -> AsyncIterator[dict[str, Any]]:
        after: Any = None
        while True:
            query = {**params, "limit": PAGE_SIZE} | ({"after": after} if after is not None else {})
            page = await self.json(Call("GET", path, params=query))
            for row in page["data"]:
                yield row
            if not page["has_more"] or not page["data"]:
                return
            after = page["data"][-1][cursor]

    async def download(self, call: Call, path: str | Path) -> Path:
        target = Path(path).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        response = await self.request(call, stream=True)
        try:
            with target.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
        except httpx.TransportError as error:
            raise APIConnectionError(f"the download of {call.path} broke off: {error}") from error
        finally:
            await response.aclose()
        return target


class AsyncDatasets:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def upload(
        self,
        path: str | Path,
        name: str | None = None,
        *,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Dataset:
        with _shared.dataset_upload(path, name, tags, metadata) as upload:
            call = Call("POST", "/v1/datasets", upload=upload, timeout=UPLOAD_TIMEOUT)
            return Dataset.model_validate(await self._client.json(call))

    async def list(self, tag: str | Sequence[str] | None = None) -> list[Dataset]:
        rows = self._client.pages("/v1/datasets", {"tag": _shared.tags_param(tag)}, "id")
        return [Dataset.model_validate(row) async for row in rows]

    async def update(
        self,
        dataset_id: str,
        *,
        name: str | None = UNSET,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, str | None] | None = None,
    ) -> Dataset:
        body = _shared.labels_patch(name, tags, metadata)
        call = Call("PATCH", f"/v1/datasets/{dataset_id}", json=body)
        return Dataset.model_validate(await self._client.json(call))

    async def builtins(self) -> list[BuiltinDataset]:
        page = await self._client.json(Call("GET", "/v1/datasets", params={"builtin": "true"}))
        return [BuiltinDataset.model_validate(row) for row in page["data"]]

    async def get(self, dataset_id: str) -> Dataset:
        call = Call("GET", f"/v1/datasets/{dataset_id}")
        return Dataset.model_validate(await self._client.json(call))

    async def delete(self, dataset_id: str) -> None:
        await self._client.request(Call("DELETE", f"/v1/datasets/{dataset_id}"))


class AsyncJobs:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(self, spec: Spec, idempotency_key: str | None = None) -> Job:
        key = idempotency_key or _shared.new_idempotency_key()
        call = Call(
            "POST", "/v1/jobs", json=_shared.load_spec(spec), headers={"Idempotency-Key": key},
            idempotent=True,
        )  # fmt: skip
        return Job.model_validate(await self._client.json(call))

    async def get(self, job_id: str, *, wait: float | None = None) -> Job:
        if wait is None:
            return Job.model_validate(await self._client.json(Call("GET", f"/v1/jobs/{job_id}")))
        call = Call("GET", f"/v1/jobs/{job_id}", params={"wait": wait}, timeout=LONG_POLL_TIMEOUT)
        return Job.model_validate(await self._client.json(call))

    async def list(
        self, status: str | None = None, tag: str | Sequence[str] | None = None
    ) -> AsyncIterator[Job]:
        params: dict[str, Any] = {"tag": _shared.tags_param(tag)}
        if status is not None:
            params["status"] = status
        async for row in self._client.pages("/v1/jobs", params, "id"):
            yield Job.model_validate(row)

    async def _post(self, job_id: str, action: str, body: Any = None) -> Job:
        call = Call("POST", f"/v1/jobs/{job_id}/{action}", json=body)
        return Job.model_validate(await self._client.json(call))

    async def cancel(self, job_id: str) -> Job:
        return await self._post(job_id, "cancel")

    async def pause(self, job_id: str) -> Job:
        return await self._post(job_id, "pause")

    async def resume(self, job_id: str) -> Job:
        return await self._post(job_id, "resume")

    async def continue_(self, job_id: str, steps: int) -> Job:
        return await self._post(job_id, "continue", {"steps": steps})

    async def delete(self, job_id: str) -> None:
        await self._client.request(Call("DELETE", f"/v1/jobs/{job_id}"))

    async def update(
        self,
        job_id: str,
        *,
        name: str | None = UNSET,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, str | None] | None = None,
    ) -> Job:
        body = _shared.labels_patch(name, tags, metadata)
        call = Call("PATCH", f"/v1/jobs/{job_id}", json=body)
        return Job.model_validate(await self._client.json(call))

    async def events(self, job_id: str) -> list[Event]:
        rows = self._client.pages(f"/v1/jobs/{job_id}/events", {}, "seq")
        return [Event.model_validate(row) async for row in rows]

    async def samples(self, job_id: str) -> list[Sample]:
        rows = self._client.pages(f"/v1/jobs/{job_id}/samples", {}, "step")
        return [Sample.model_validate(row) async for row in rows]

    async def checkpoints(self, job_id: str) -> list[Checkpoint]:
        rows = self._client.pages(f"/v1/jobs/{job_id}/checkpoints", {}, "step")
        return [Checkpoint.model_validate(row) async for row in rows]

    async def metrics(
        self, job_id: str, name: str | Sequence[str] | None = None
    ) -> dict[str, list[tuple[int, float | None]]]:
        series: dict[str, list[tuple[int, float | None]]] = {}
        params: dict[str, Any] = {"name": _shared.tags_param(name), "limit": 10_000}
        while True:
            call = Call("GET", f"/v1/jobs/{job_id}/metrics", params=params)
            page = await self._client.json(call)
            _shared.merge_series(series, page["data"])
            if not page["has_more"] or page["last_step"] is None:
                return series
            params["after_step"] = page["last_step"]

    async def webhook_deliveries(self, job_id: str) -> list[WebhookDelivery]:
        rows = self._client.pages(f"/v1/jobs/{job_id}/webhook_deliveries", {}, "id")
        return [WebhookDelivery.model_validate(row) async for row in rows]

    async def metrics_csv(self, job_id: str, path: str | Path) -> Path:
        return await self._client.download(Call("GET", f"/v1/jobs/{job_id}/metrics.csv"), path)

    async def tensorboard(self, job_id: str, path: str | Path) -> Path:
        call = Call("GET", f"/v1/jobs/{job_id}/tensorboard", timeout=UPLOAD_TIMEOUT)
        return await self._client.download(call, path)

    async def stream(
        self, job_id: str, *, after: int | None = None
    ) -> AsyncIterator[StreamMessage]:
        last_seq, failures = after, 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_seq is not None:
                headers["Last-Event-ID"] = str(last_seq)
            call = Call("GET", f"/v1/jobs/{job_id}/stream", headers=headers, timeout=STREAM_TIMEOUT)
            response = await self._client.request(call, stream=True)
            try:
                async for sse in EventSource(response).aiter_sse():
                    if not sse.data:  # a `retry:` line alone
                        continue
                    message = _shared.stream_message(sse.event, sse.data, sse.id)
                    failures = 0
                    if message.event == "event" and message.id is not None:
                        last_seq = int(message.id)
                    yield message
                    if _shared.is_final(message):
                        return
                return
            except httpx.TransportError as error:
                failures += 1
                if failures > STREAM_RECONNECTS:
                    raise APIConnectionError(
                        f"the stream of {job_id} broke off: {error}"
                    ) from error
                await self._client.sleep(min(2.0**failures, 10.0))
            finally:
                await response.aclose()

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_message: Callable[[StreamMessage], None] | None = None,
    ) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            async for message in self.stream(job_id):
                if on_message is not None:
                    on_message(message)
                _check_deadline(job_id, deadline)
        except APIConnectionError:
            pass
        except APIError as error:
            if error.status is not None and error.status < 500:
                raise
        job, failures = await self.get(job_id), 0
        while not job.finished:
            _check_deadline(job_id, deadline)
            try:
                job, failures = await self.get(job_id, wait=_poll_s(deadline)), 0
            except APIConnectionError as error:
                failures += 1
                if failures > STREAM_RECONNECTS:
                    raise JobStreamLost(f"lost {job_id}: {error}", code="stream_lost") from error
                await self._client.sleep(min(2.0**failures, 10.0))
        return job


class AsyncModels:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self, tag: str | Sequence[str] | None = None) -> list[Model]:
        rows = self._client.pages("/v1/models", {"tag": _shared.tags_param(tag)}, "id")
        return [Model.model_validate(row) async for row in rows]

    async def get(self, model_id: str) -> Model:
        return Model.model_validate(await self._client.json(Call("GET", f"/v1/models/{model_id}")))

    async def update(
        self,
        model_id: str,
        *,
        name: str | None = UNSET,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, str | None] | None = None,
    ) -> Model:
        body = _shared.labels_patch(name, tags, metadata)
        call = Call("PATCH", f"/v1/models/{model_id}", json=body)
        return Model.model_validate(await self._client.json(call))

    async def delete(self, model_id: str) -> None:
        await self._client.request(Call("DELETE", f"/v1/models/{model_id}"))

    async def _samples(self, model_id: str, body: dict[str, Any]) -> bytes:
        call = Call("POST", f"/v1/models/{model_id}/samples", json=body, idempotent=True)
        return (await self._client.request(call)).content

    async def sample(
        self,
        model_id: str,
        labels: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
        per_class: int | None = None,
        n: int | None = None,
        seed: int | None = None,
        truncation: float | None = None,
    ) -> np.ndarray:
        body = _shared.sample_body(
            format="npy", labels=labels, class_names=class_names, per_class=per_class, n=n,
            seed=seed, truncation=truncation,
        )  # fmt: skip
        return _shared.read_npy(await self._samples(model_id, body))

    async def sample_grid(
        self,
        model_id: str,
        labels: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
        per_class: int | None = None,
        n: int | None = None,
        seed: int | None = None,
        truncation: float | None = None,
    ) -> bytes:
        body = _shared.sample_body(
            format="png_grid", labels=labels, class_names=class_names, per_class=per_class, n=n,
            seed=seed, truncation=truncation,
        )  # fmt: skip
        return await self._samples(model_id, body)

    async def translate(self, model_id: str, inputs: str | Path | np.ndarray) -> np.ndarray:
        with _shared.translation_upload(inputs, "npy") as upload:
            # the same inputs always give the same bytes, so resending is safe
            call = Call(
                "POST",
                f"/v1/models/{model_id}/translate",
                upload=upload,
                timeout=UPLOAD_TIMEOUT,
                idempotent=True,
            )
            return _shared.read_npy((await self._client.request(call)).content)

    async def translate_grid(self, model_id: str, inputs: str | Path | np.ndarray) -> bytes:
        with _shared.translation_upload(inputs, "png_grid") as upload:
            call = Call("POST", f"/v1/models/{model_id}/translate", upload=upload,
                        timeout=UPLOAD_TIMEOUT, idempotent=True)  # fmt: skip
            return (await self._client.request(call)).content

    async def _interpolation(self, model_id: str, body: dict[str, Any]) -> bytes:
        call = Call("POST", f"/v1/models/{model_id}/interpolations", json=body, idempotent=True)
        return (await self._client.request(call)).content

    async def interpolate(
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
        body = _shared.interpolation_body(
            format="npy", from_seed=from_seed, to_seed=to_seed, from_class=from_class,
            to_class=to_class, frames=frames, truncation=truncation,
        )  # fmt: skip
        return _shared.read_npy(await self._interpolation(model_id, body))

    async def interpolation_image(
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
        body = _shared.interpolation_body(
            format=format, from_seed=from_seed, to_seed=to_seed, from_class=from_class,
            to_class=to_class, frames=frames, truncation=truncation,
        )  # fmt: skip
        return await self._interpolation(model_id, body)

    async def materialize_dataset(
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
        body = _shared.synthetic_dataset_body(
            per_class=per_class, seed=seed, truncation=truncation, name=name, tags=tags,
            metadata=metadata,
        )  # fmt: skip
        call = Call("POST", f"/v1/models/{model_id}/datasets", json=body)
        return Dataset.model_validate(await self._client.json(call))

    async def scores(
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
            return Scores.model_validate(await self._client.json(call))

    async def export(self, model_id: str, path: str | Path) -> Path:
        content = (await self._client.request(Call("GET", f"/v1/models/{model_id}/export"))).content
        return _shared.save_export(content, path)
