"""Generators in memory and samples in every response format.

``ModelCache`` keeps the most recently used artifacts loaded (an LRU of ``GeneratorArtifact``
keyed by model id); it is thread-safe, and loading happens outside its lock, so a slow download
never blocks requests for other models.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from gan_engine.artifacts import ArtifactError, GeneratorArtifact, Samples
from gan_engine.images import png_bytes
from store.errors import Damaged
from store.storage import ObjectStorage, model_config_key, model_weights_key

log = logging.getLogger("api.generation")
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # a fixed timestamp: same samples, same zip bytes


class ModelCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, GeneratorArtifact] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_id: str, storage: ObjectStorage) -> GeneratorArtifact:
        with self._lock:
            artifact = self._items.get(model_id)
            if artifact is not None:
                self._items.move_to_end(model_id)
                return artifact
        try:
            artifact = GeneratorArtifact.from_bytes(
                storage.get_bytes(model_weights_key(model_id)),
                storage.get_bytes(model_config_key(model_id)),
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

    def __contains__(self, model_id: str) -> bool:
        with self._lock:
            return model_id in self._items


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
