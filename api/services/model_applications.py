"""What a trained generator is used for beyond sampling: latent walks (``POST
/v1/models/{id}/interpolations``) and synthetic datasets (``POST /v1/models/{id}/datasets``).

Both load the generator from the model cache and run it on the batcher's torch thread, as
sampling does. A model of the wrong kind (an unconditional one for a class walk or a labelled
dataset, a 2-D point one for images) is a 422 ``wrong_model_kind`` naming what would work.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
import numpy as np
import torch
from sqlalchemy.orm import Session, sessionmaker

from api.config import ApiSettings
from api.schemas import InterpolationRequest, LabelsIn, SyntheticDatasetRequest
from api.services.datasets import create_dataset
from api.services.generation import Encoded, ForwardBatcher, ModelCache
from api.services.usage import check_quota
from gan_engine.artifacts import GeneratorArtifact
from gan_engine.interpolation import ModelKindError, gif_bytes, interpolate, npy_bytes, strip_png
from store.db import session_scope
from store.errors import InvalidRequest, PayloadTooLarge
from store.models import Dataset
from store.storage import ObjectStorage

WRONG_KIND = "wrong_model_kind"
FORWARD_CHUNK = 256  # samples a forward pass while materialising a dataset


async def _artifact(model_id: str, storage: ObjectStorage, cache: ModelCache) -> GeneratorArtifact:
    return cache.peek(model_id) or await anyio.to_thread.run_sync(cache.get, model_id, storage)


def _walk_bytes(artifact: GeneratorArtifact, request: InterpolationRequest) -> Encoded:
    try:
        walk = interpolate(
            artifact,
            from_seed=request.from_seed,
            to_seed=request.to_seed,
            from_class=request.from_class,
            to_class=request.to_class,
            frames=request.frames,
            truncation=request.truncation,
        )
        if request.format == "npy":
            return Encoded(npy_bytes(walk), "application/octet-stream", "interpolation.npy")
        if request.format == "gif":
            return Encoded(gif_bytes(artifact, walk), "image/gif")
        return Encoded(strip_png(artifact, walk), "image/png")
    except ModelKindError as error:
        raise InvalidRequest(error.message, code=WRONG_KIND, param=error.param) from None


async def interpolation(
    *,
    model_id: str,
    request: InterpolationRequest,
    storage: ObjectStorage,
    cache: ModelCache,
    batcher: ForwardBatcher,
) -> Encoded:
    """A walk of a model the caller owns, encoded as asked."""
    artifact = await _artifact(model_id, storage, cache)
    return await batcher.on_torch(_walk_bytes, artifact, request)


def _synthetic_images(
    artifact: GeneratorArtifact, request: SyntheticDatasetRequest
) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images of every class, in class blocks: the z of ``latents(total, seed)``
    and the labels of ``sample(per_class=...)``, run a chunk at a time."""
    labels = torch.arange(artifact.config.num_classes).repeat_interleave(request.per_class)
    z = artifact.latents(len(labels), seed=request.seed, truncation=request.truncation)
    chunks = [
        artifact.samples(
            artifact.forward(z[i : i + FORWARD_CHUNK], labels[i : i + FORWARD_CHUNK]),
            labels[i : i + FORWARD_CHUNK],
        ).data
        for i in range(0, len(labels), FORWARD_CHUNK)
    ]
    return np.concatenate(chunks), labels.numpy()


def _check_materialisable(
    artifact: GeneratorArtifact, request: SyntheticDatasetRequest, settings: ApiSettings
) -> None:
    if artifact.config.kind != "image":
        raise InvalidRequest(
            "a dataset pack holds images; this model generates 2-D points (sample them with "
            "POST /v1/models/{id}/samples, format npy or json)",
            code=WRONG_KIND,
        )
    if not artifact.conditional:
        raise InvalidRequest(
            "per_class needs a class-conditional model; this one is unconditional, so its "
            "samples would carry no labels to train a classifier on",
            code=WRONG_KIND,
            param="per_class",
        )
    total = request.per_class * artifact.config.num_classes
    limit = min(settings.max_synthetic_images, settings.max_images)
    if total > limit:
        raise PayloadTooLarge(
            f"per_class {request.per_class} x {artifact.config.num_classes} classes = {total:,} "
            f"images; at most {limit:,} a request (MAX_SYNTHETIC_IMAGES, MAX_IMAGES): ask for "
            f"per_class {limit // artifact.config.num_classes} or less",
            param="per_class",
        )


def _labels(model_id: str, request: SyntheticDatasetRequest) -> LabelsIn:
    provenance = {
        "source_model": model_id,
        "seed": str(request.seed),
        "truncation": "none" if request.truncation is None else str(request.truncation),
    }
    return LabelsIn.model_validate(
        {"tags": request.tags, "metadata": provenance | request.metadata}
    )


async def materialise(
    *,
    model_id: str,
    tenant_id: str,
    request: SyntheticDatasetRequest,
    sessions: sessionmaker[Session],
    storage: ObjectStorage,
    settings: ApiSettings,
    cache: ModelCache,
    batcher: ForwardBatcher,
) -> Dataset:
    """Generate the samples and store them through the upload path (the same validation, pack,
    quota and row as ``POST /v1/datasets`` of an ``.npz``), so the dataset is like any other."""
    artifact = await _artifact(model_id, storage, cache)
    _check_materialisable(artifact, request, settings)
    labels = _labels(model_id, request)  # before the work: a bad merged metadata is a 422 now
    with session_scope(sessions) as session:  # refused before the work, not after it
        quota = settings.max_storage_bytes_per_tenant
        check_quota(session, tenant_id=tenant_id, quota_bytes=quota)
    images, label_array = await batcher.on_torch(_synthetic_images, artifact, request)
    names = np.asarray(artifact.config.class_names, dtype=str)

    def store() -> Dataset:
        with tempfile.TemporaryDirectory(prefix="ganforge-synthetic-") as folder:
            path = Path(folder) / "samples.npz"
            np.savez(path, images=images, labels=label_array, class_names=names)
            return create_dataset(
                sessions=sessions,
                storage=storage,
                settings=settings,
                tenant_id=tenant_id,
                path=path,
                filename=f"{model_id}-synthetic.npz",
                name=request.name,
                labels=labels,
            )

    return await anyio.to_thread.run_sync(store)
