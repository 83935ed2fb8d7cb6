"""Generators in memory, forward passes shared by concurrent requests, samples in every format.

``ModelCache`` keeps the most recently used artifacts loaded (an LRU of ``GeneratorArtifact``
keyed by model id, with the discriminator where the artifact keeps one, for anomaly scores); it
is thread-safe, and loading happens outside its lock, so a slow download never blocks requests
for other models.

``ForwardBatcher`` lets concurrent requests for one generator share forward passes (continuous
batching): many small requests cost about one pass. Each sample depends on its own z and label
only (the generator is in eval mode), and every request starts at a multiple of ``ALIGN`` samples
in the shared batch, where the CPU kernels compute it exactly as they would alone: the same
request gives the same bytes whether or not it shared a pass (tested).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from gan_engine.artifacts import ArtifactError, GeneratorArtifact, Samples, stores_discriminator
from gan_engine.images import png_bytes
from gan_engine.precision import Precision
from store.errors import Damaged
from store.storage import (
    ObjectStorage,
    model_config_key,
    model_discriminator_key,
    model_weights_key,
)

log = logging.getLogger("api.generation")
T = TypeVar("T")
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # a fixed timestamp: same samples, same zip bytes


class ModelCache:
    def __init__(self, size: int, precision: Precision = "off") -> None:
        self.size, self.precision = size, precision
        self._items: OrderedDict[str, GeneratorArtifact] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_id: str, storage: ObjectStorage) -> GeneratorArtifact:
        with self._lock:
            artifact = self._items.get(model_id)
            if artifact is not None:
                self._items.move_to_end(model_id)
                return artifact
        try:
            config = storage.get_bytes(model_config_key(model_id))
            artifact = GeneratorArtifact.from_bytes(
                storage.get_bytes(model_weights_key(model_id)),
                config,
                precision=self.precision,
                discriminator=storage.get_bytes(model_discriminator_key(model_id))
                if stores_discriminator(config)
                else None,
            )
        except ArtifactError as error:  # our stored file is damaged: not the client's fault
            log.error("model %s: stored artifact unreadable: %s", model_id, error)
            raise Damaged(
                f"the stored weights of model {model_id} cannot be read; this is a fault on our "
                "side and has been logged",
                code="model_unreadable",
            ) from error
        with self._lock:
            self._items[model_id] = artifact
            self._items.move_to_end(model_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return artifact

    def peek(self, model_id: str) -> GeneratorArtifact | None:
        """The loaded artifact, or None (no loading: ``get`` does that, in a thread)."""
        with self._lock:
            artifact = self._items.get(model_id)
            if artifact is not None:
                self._items.move_to_end(model_id)
            return artifact

    def __contains__(self, model_id: str) -> bool:
        with self._lock:
            return model_id in self._items

    def forget(self, model_id: str) -> None:
        """Drop a deleted model (other API processes refuse it from its missing row)."""
        with self._lock:
            self._items.pop(model_id, None)


ALIGN = 16  # samples: the batch blocking of the CPU kernels (AVX-512 holds 16 floats)


@dataclass
class _Pending:
    z: torch.Tensor
    labels: torch.Tensor | None
    done: asyncio.Future[torch.Tensor]


@dataclass
class _Lane:
    """The requests waiting for one generator, and whether a pass of it is running."""

    artifact: GeneratorArtifact
    pending: list[_Pending] = field(default_factory=list)
    busy: bool = False


class ForwardBatcher:
    """Forward passes shared by the concurrent requests of one generator.

    A request that finds its generator idle runs at once; requests that arrive while a pass runs
    share the next one (at most ``max_batch`` samples; the rest take the pass after). Nobody waits
    for company, so a lone request pays nothing, and under load the passes grow by themselves.
    ``coalesce`` False runs every request on its own; a request of ``max_batch`` samples or more
    always does. Passes run on one thread of their own (see ``_on_torch_thread``); the event loop
    only gathers and splits."""

    def __init__(self, *, max_batch: int, coalesce: bool = True) -> None:
        self.max_batch, self.coalesce = max_batch, coalesce
        self._torch: ThreadPoolExecutor | None = None
        self._lanes: dict[int, _Lane] = {}
        self._running: set[asyncio.Task[None]] = set()  # held, so no pass is collected mid-way
        self.passes = 0  # forward passes run, for tests and metrics

    async def forward(
        self, artifact: GeneratorArtifact, z: torch.Tensor, labels: torch.Tensor | None
    ) -> torch.Tensor:
        if not self.coalesce or _aligned(len(z)) >= self.max_batch:
            self.passes += 1
            return await self._on_torch_thread(artifact, z, labels)
        lane = self._lanes.setdefault(id(artifact), _Lane(artifact))
        done: asyncio.Future[torch.Tensor] = asyncio.get_running_loop().create_future()
        lane.pending.append(_Pending(z, labels, done))
        if not lane.busy:
            lane.busy = True
            task = asyncio.get_running_loop().create_task(self._drain(lane))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return await done

    async def _drain(self, lane: _Lane) -> None:
        """Pass after pass until nobody waits for this generator."""
        try:
            while lane.pending:
                batch, size = [], 0
                while lane.pending and (
                    not batch or size + _aligned(len(lane.pending[0].z)) <= self.max_batch
                ):
                    request = lane.pending.pop(0)
                    batch.append(request)
                    size += _aligned(len(request.z))
                self.passes += 1
                await self._run(lane.artifact, batch)
        finally:
            lane.busy = False
            if not lane.pending:
                self._lanes.pop(id(lane.artifact), None)

    async def _on_torch_thread(
        self, artifact: GeneratorArtifact, z: torch.Tensor, labels: torch.Tensor | None
    ) -> torch.Tensor:
        return await self.on_torch(artifact.forward, z, labels)

    async def on_torch(self, work: Callable[..., T], *args: Any) -> T:
        """Run ``work`` on the one thread that runs all of this process's torch work, off the
        event loop: torch's CPU kernels keep a team of OpenMP threads per calling thread, and
        teams in several threads (a thread pool's, the loop's) stole each other's cores."""
        if self._torch is None:
            self._torch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch")
        return await asyncio.get_running_loop().run_in_executor(self._torch, work, *args)

    def close(self) -> None:
        if self._torch is not None:
            self._torch.shutdown(wait=False, cancel_futures=True)
            self._torch = None

    async def _run(self, artifact: GeneratorArtifact, requests: list[_Pending]) -> None:
        if len(requests) == 1:  # alone: no padding
            z, labels, starts = requests[0].z, requests[0].labels, [0]
        else:
            z, labels, starts = _aligned_batch(requests)
        try:
            output = await self._on_torch_thread(artifact, z, labels)
        except Exception as error:  # every waiting request gets the failure
            for request in requests:
                if not request.done.done():
                    request.done.set_exception(error)
            return
        for request, start in zip(requests, starts, strict=True):
            if not request.done.done():
                request.done.set_result(output[start : start + len(request.z)].clone())


def _aligned(count: int) -> int:
    return -(-count // ALIGN) * ALIGN


def _aligned_batch(
    requests: list[_Pending],
) -> tuple[torch.Tensor, torch.Tensor | None, list[int]]:
    """The requests' z (and labels) in one batch, each starting at a multiple of ALIGN; the gaps
    are zeros and label 0, computed and dropped."""
    total = sum(_aligned(len(r.z)) for r in requests)
    z = torch.zeros(total, requests[0].z.shape[1], dtype=requests[0].z.dtype)
    conditional = requests[0].labels is not None
    labels = torch.zeros(total, dtype=torch.int64) if conditional else None
    starts, at = [], 0
    for request in requests:
        starts.append(at)
        z[at : at + len(request.z)] = request.z
        if labels is not None and request.labels is not None:
            labels[at : at + len(request.labels)] = request.labels
        at += _aligned(len(request.z))
    return z, labels, starts


@dataclass(frozen=True)
class Encoded:
    body: bytes
    media_type: str
    filename: str | None = None


def sample_class_names(samples: Samples) -> list[str] | None:
    """The class name of each sample (None for an unconditional model)."""
    if samples.labels is None or not samples.class_names:
        return None
    return [samples.class_names[int(k)] for k in samples.labels]


def safe_filename_part(name: str) -> str:
    """A class name as a file-name part: ``T-shirt/top`` → ``T-shirt_top``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "class"


def encode_samples(artifact: GeneratorArtifact, samples: Samples, fmt: str) -> Encoded:
    """The response body of ``POST /v1/models/{id}/samples`` in format ``fmt``."""
    if fmt == "png_grid":
        return Encoded(artifact.png(samples), "image/png")
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, samples.data, allow_pickle=False)
        return Encoded(buffer.getvalue(), "application/octet-stream", "samples.npy")
    names = sample_class_names(samples)
    if fmt == "json":
        body = {
            "samples": samples.data.tolist(),
            "shape": list(samples.data.shape),
            "labels": None if samples.labels is None else samples.labels.tolist(),
            "class_names": names,
        }
        return Encoded(json.dumps(body, separators=(",", ":")).encode(), "application/json")
    if fmt == "png_zip":
        if artifact.config.kind != "image":
            raise ArtifactError(
                "format 'png_zip' needs an image model; use png_grid, npy or json", param="format"
            )
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for i, image in enumerate(samples.data):
                suffix = f"_{safe_filename_part(names[i])}" if names else ""
                info = zipfile.ZipInfo(f"{i:04d}{suffix}.png", date_time=ZIP_EPOCH)
                archive.writestr(info, png_bytes(image))
        return Encoded(buffer.getvalue(), "application/zip", "samples.zip")
    raise ArtifactError(f"unknown format {fmt!r}", param="format")
