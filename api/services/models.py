"""Trained generators: listing, sampling and export."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Sequence

import anyio
import torch
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from api.schemas import SampleRequest
from api.services.generation import (
    ZIP_EPOCH,
    Encoded,
    ForwardBatcher,
    ModelCache,
    encode_samples,
)
from api.services.tenancy import get_owned, list_owned
from api.telemetry import ApiMetrics
from gan_engine.artifacts import (
    CONFIG_FILE,
    DISCRIMINATOR_FILE,
    WEIGHTS_FILE,
    GeneratorArtifact,
    stores_discriminator,
)
from store.errors import InvalidRequest, NotFound
from store.models import TrainedModel
from store.reads import AsyncReads
from store.storage import (
    ObjectStorage,
    delete_objects,
    model_config_key,
    model_discriminator_key,
    model_prefix,
    model_weights_key,
)

SPEC_FILE = "spec.json"


def get_model(session: Session, *, tenant_id: str, model_id: str) -> TrainedModel:
    return get_owned(session, TrainedModel, object_id=model_id, tenant_id=tenant_id)


MODEL_OF_TENANT = select(TrainedModel.id).where(
    TrainedModel.id == bindparam("model_id"), TrainedModel.tenant_id == bindparam("tenant_id")
)


async def check_model_owned(reads: AsyncReads, *, tenant_id: str, model_id: str) -> None:
    """``NotFound`` unless the tenant has this model: one indexed read on the asyncio reads."""
    if await reads.one(MODEL_OF_TENANT, model_id=model_id, tenant_id=tenant_id) is None:
        raise NotFound(f"model {model_id} not found")


def delete_model(
    session: Session, *, storage: ObjectStorage, cache: ModelCache, tenant_id: str, model_id: str
) -> None:
    """Delete a model's row, then its artifact (a leftover object is logged, only wasted
    space). The job that trained it stays, with its history."""
    model = get_model(session, tenant_id=tenant_id, model_id=model_id)
    prefix = model_prefix(model_id)
    session.delete(model)
    session.commit()
    cache.forget(model_id)
    delete_objects(storage, prefix, what=f"model {model_id}")


def list_models(
    session: Session, *, tenant_id: str, after: str | None, limit: int, tags: Sequence[str] = ()
) -> tuple[list[TrainedModel], bool]:
    return list_owned(
        session, TrainedModel, tenant_id=tenant_id, after=after, limit=limit, tags=tags
    )


async def generate(
    *,
    model_id: str,
    request: SampleRequest,
    storage: ObjectStorage,
    cache: ModelCache,
    batcher: ForwardBatcher,
    metrics: ApiMetrics,
    max_samples: int,
) -> Encoded:
    """Samples of a model the caller owns. Loading and encoding run in worker threads; the
    latents, the forward pass (shared with concurrent requests for the same model) and the
    conversion to images on the batcher's torch thread."""
    started = time.perf_counter()
    artifact = cache.peek(model_id) or await anyio.to_thread.run_sync(cache.get, model_id, storage)
    count, labels = artifact.resolve_labels(
        labels=request.labels,
        class_names=request.class_names,
        per_class=request.per_class,
        n=request.n,
    )
    if count > max_samples:
        raise InvalidRequest(
            f"{count} samples asked for; at most {max_samples} a request (MAX_GENERATE_SAMPLES)",
            code="invalid_sampling_request",
            param="per_class" if request.per_class is not None else "n",
        )
    label_tensor = None if labels is None else torch.tensor(labels, dtype=torch.int64)
    z = await batcher.on_torch(latents_of, artifact, count, request.seed, request.truncation)
    output = await batcher.forward(artifact, z, label_tensor)
    samples = await batcher.on_torch(artifact.samples, output, label_tensor)
    encoded = await anyio.to_thread.run_sync(encode_samples, artifact, samples, request.format)
    metrics.generation.labels(request.format).observe(time.perf_counter() - started)
    return encoded


def latents_of(
    artifact: GeneratorArtifact, count: int, seed: int, truncation: float | None
) -> torch.Tensor:
    return artifact.latents(count, seed=seed, truncation=truncation)


def export_zip(*, model: TrainedModel, storage: ObjectStorage) -> bytes:
    """generator.safetensors + config.json (what ``gan_engine sample DIR`` reads), spec.json,
    and discriminator.safetensors when the model keeps one."""
    config = storage.get_bytes(model_config_key(model.id))
    files = {
        WEIGHTS_FILE: storage.get_bytes(model_weights_key(model.id)),
        CONFIG_FILE: config,
        SPEC_FILE: json.dumps(model.spec, indent=2, sort_keys=True).encode(),
    }
    if stores_discriminator(config):
        files[DISCRIMINATOR_FILE] = storage.get_bytes(model_discriminator_key(model.id))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(
                zipfile.ZipInfo(name, date_time=ZIP_EPOCH), data, compress_type=zipfile.ZIP_DEFLATED
            )
    return buffer.getvalue()
