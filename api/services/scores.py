"""Anomaly scores of uploaded images under a trained model (``gan_engine.anomaly``).

The upload is read by the datasets' hardened readers (``dataset_files``: an ``.npz`` pack or a
``.zip`` of PNG/JPEG images) under the scores' own, smaller limits; the scoring runs on the
batcher's torch thread, as sampling does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import numpy as np
import torch
from pydantic import ValidationError

from api.config import ApiSettings
from api.schemas import ScoreRequest
from api.services import dataset_files
from api.services.generation import ForwardBatcher, ModelCache
from gan_engine.anomaly import (
    SCORE_METHODS,
    NoDiscriminator,
    ScoreMethod,
    SearchSettings,
    anomaly_scores,
    images_from_uint8,
)
from gan_engine.artifacts import ArtifactError, GeneratorArtifact
from store.errors import Conflict, InvalidRequest, PayloadTooLarge
from store.storage import ObjectStorage

MAX_SCORE_ENTRIES = 4096  # members of an uploaded zip: images, folders and the ignored
MAX_SCORE_DECODED = 64 * 2**20  # bytes of decoded images (256 RGB images of 256² take 50 MB)


def score_request(fields: dict[str, str]) -> ScoreRequest:
    """The form fields as a ``ScoreRequest`` (numbers arrive as text)."""
    try:
        return ScoreRequest.model_validate(fields, strict=False)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise InvalidRequest(f"{param}: {first['msg']}", param=param) from None


def read_images(path: Path, filename: str, settings: ApiSettings) -> tuple[np.ndarray, Any]:
    """uint8 images (N, H, W[, C]) and, when the upload labels them, (labels, class names)."""
    limits = settings.model_copy(
        update={
            "max_images": settings.max_score_images,
            "max_zip_entries": min(settings.max_zip_entries, MAX_SCORE_ENTRIES),
            "max_uncompressed_bytes": min(settings.max_uncompressed_bytes, MAX_SCORE_DECODED),
        }
    )
    dataset_files.check_file_type(path, filename)
    with dataset_files.converted(path, limits) as upload:
        if len(upload.images) > settings.max_score_images:
            raise PayloadTooLarge(
                f"{len(upload.images):,} images; at most {settings.max_score_images:,} a request "
                "(MAX_SCORE_IMAGES)",
                param="file",
            )
        labelled = None if upload.labels is None else (upload.labels.copy(), upload.class_names)
        return upload.images.copy(), labelled


def model_labels(artifact: GeneratorArtifact, labelled: Any) -> torch.Tensor | None:
    """The upload's labels as the model's class indices: by class name (zip folders, an .npz's
    class_names), or as indices when the upload names its classes only by number."""
    if labelled is None or not artifact.conditional:
        return None
    labels, names = labelled
    model_names = artifact.config.class_names or []
    if all(name in model_names for name in names):
        index = torch.tensor([model_names.index(name) for name in names], dtype=torch.int64)
        return index[torch.from_numpy(labels.astype(np.int64))]
    if names == [str(k) for k in range(len(names))]:
        return torch.from_numpy(labels.astype(np.int64))
    unknown = [name for name in names if name not in model_names]
    raise InvalidRequest(
        f"unknown class names {unknown[:5]}; this model knows {model_names}",
        code="invalid_scoring_request",
        param="file",
    )


def methods_of(request: ScoreRequest) -> tuple[ScoreMethod, ...]:
    return SCORE_METHODS if request.method == "both" else (request.method,)


async def score(
    *,
    model_id: str,
    request: ScoreRequest,
    path: Path,
    filename: str,
    storage: ObjectStorage,
    cache: ModelCache,
    batcher: ForwardBatcher,
    settings: ApiSettings,
) -> dict[str, Any]:
    """The ``ScoresOut`` of the uploaded images under the model ``model_id`` (owned: checked)."""
    artifact = cache.peek(model_id) or await anyio.to_thread.run_sync(cache.get, model_id, storage)
    methods = methods_of(request)
    if artifact.config.kind != "image":
        raise Conflict(
            f"model {model_id} makes 2-D points; anomaly scores are for image models",
            code="model_cannot_score",
        )
    if artifact.discriminator is None and (
        "discriminator" in methods or request.feature_weight > 0
    ):
        raise Conflict(
            f"model {model_id} keeps no discriminator (it was trained before models kept one): "
            "ask for method 'reconstruction' with feature_weight 0, or retrain it",
            code="no_discriminator",
            param="method",
        )
    uint8, labelled = await anyio.to_thread.run_sync(read_images, path, filename, settings)
    search = SearchSettings(
        steps=request.steps,
        starts=request.starts,
        seed=request.seed,
        distance=request.distance,
        feature_weight=request.feature_weight,
    )
    try:
        images = images_from_uint8(artifact, uint8)
        labels = model_labels(artifact, labelled)
        scores = await batcher.on_torch(anomaly_scores, artifact, images, methods, labels, search)
    except NoDiscriminator as error:  # checked above; kept for a racing artifact change
        raise Conflict(error.message, code="no_discriminator", param="method") from None
    except ArtifactError as error:
        raise InvalidRequest(
            error.message, code="invalid_scoring_request", param=error.param or "file"
        ) from None
    return {
        "model_id": model_id,
        "count": len(images),
        "scores": scores,
        "labels": None if labels is None else labels.tolist(),
        "search": None if "reconstruction" not in methods else search_out(search),
    }


def search_out(search: SearchSettings) -> dict[str, Any]:
    return {
        "seed": search.seed,
        "steps": search.steps,
        "starts": search.starts,
        "distance": search.distance,
        "feature_weight": search.feature_weight,
    }
