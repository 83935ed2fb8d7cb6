"""``/v1/models``: trained generators, sampling and export."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from api.deps import (
    BatcherDep,
    MetricsDep,
    ModelCacheDep,
    ReadsDep,
    SessionDep,
    SessionmakerDep,
    SettingsDep,
    StorageDep,
    TenantDep,
)
from api.json_body import StrictJSONRoute
from api.params import DEFAULT_LIMIT, AfterId, Limit, ModelId, TagFilter
from api.schemas import (
    ERROR_RESPONSES,
    DatasetOut,
    InterpolationRequest,
    LabelsPatch,
    ModelOut,
    Page,
    SampleRequest,
    SamplesJson,
    ScoreRequest,
    ScoresOut,
    SyntheticDatasetRequest,
    error,
)
from api.services import model_applications as applications
from api.services import models as service
from api.services import scores as scores_service
from api.services import translation
from api.services.generation import Encoded
from api.services.tenancy import relabel_from
from api.uploads import multipart_body, received_upload
from store.models import TrainedModel

router = APIRouter(
    prefix="/v1/models", tags=["models"], responses=ERROR_RESPONSES, route_class=StrictJSONRoute
)


def encoded_response(encoded: Encoded) -> Response:
    """Samples, translations or a walk as the format asked for them (a download when named)."""
    headers = {}
    if encoded.filename:
        headers["Content-Disposition"] = f'attachment; filename="{encoded.filename}"'
    return Response(encoded.body, media_type=encoded.media_type, headers=headers)


@router.get("", summary="List models", response_model=Page[ModelOut])
def list_models(
    session: SessionDep,
    caller: TenantDep,
    tags: TagFilter = None,
    limit: Limit = DEFAULT_LIMIT,
    after: AfterId = None,
) -> Any:
    """The generators of this account's succeeded jobs, newest first."""
    rows, more = service.list_models(
        session, tenant_id=caller.tenant_id, after=after, limit=limit, tags=tags or ()
    )
    return {"data": rows, "has_more": more}


@router.get("/{model_id}", summary="Get a model", response_model=ModelOut)
def get_model(model_id: ModelId, session: SessionDep, caller: TenantDep) -> Any:
    return service.get_model(session, tenant_id=caller.tenant_id, model_id=model_id)


@router.patch("/{model_id}", summary="Rename, tag or annotate a model", response_model=ModelOut)
def patch_model(
    model_id: ModelId, body: LabelsPatch, session: SessionDep, caller: TenantDep
) -> Any:
    """As `PATCH /v1/jobs/{id}`. A model starts with its job's name, tags and metadata."""
    return relabel_from(body, session, TrainedModel, object_id=model_id, tenant_id=caller.tenant_id)


@router.delete("/{model_id}", status_code=204, summary="Delete a model")
def delete_model(
    model_id: ModelId,
    session: SessionDep,
    caller: TenantDep,
    storage: StorageDep,
    cache: ModelCacheDep,
) -> Response:
    """Its row and its artifact (weights and config). The job that trained it stays, with its
    metrics, samples and checkpoints, and can be continued or deleted."""
    service.delete_model(
        session, storage=storage, cache=cache, tenant_id=caller.tenant_id, model_id=model_id
    )
    return Response(status_code=204)


@router.post(
    "/{model_id}/samples",
    summary="Generate samples",
    response_class=Response,
    responses={
        200: {
            "description": "by `format`: a PNG grid, a zip of PNGs, an .npy array or JSON",
            "content": {
                "image/png": {},
                "application/zip": {},
                "application/octet-stream": {},
                "application/json": {"schema": SamplesJson.model_json_schema()},
            },
        },
        500: error("`model_unreadable`: the stored weights are damaged (our fault; logged)"),
    },
)
async def generate_samples(
    model_id: ModelId,
    body: SampleRequest,
    reads: ReadsDep,
    caller: TenantDep,
    settings: SettingsDep,
    storage: StorageDep,
    cache: ModelCacheDep,
    batcher: BatcherDep,
    metrics: MetricsDep,
) -> Response:
    """`{"class_names": ["Sneaker"], "n": 16, "seed": 3}` gives 16 sneakers; the same seed and
    labels always give the same bytes. At most 1024 samples a request (MAX_GENERATE_SAMPLES)."""
    await service.check_model_owned(reads, tenant_id=caller.tenant_id, model_id=model_id)
    encoded = await service.generate(
        model_id=model_id,
        request=body,
        storage=storage,
        cache=cache,
        batcher=batcher,
        metrics=metrics,
        max_samples=settings.max_generate_samples,
    )
    return encoded_response(encoded)


# POST: streams to disk under MAX_TRANSLATE_UPLOAD_BYTES, not the JSON body limit
TRANSLATE_PATH = re.compile(r"/v1/models/[^/]+/translate")
TRANSLATE_BODY = multipart_body(
    "one PNG/JPEG image, or an .npy array of uint8 images (H×W[×C] or N×H×W[×C]); resized "
    "(bicubic) to the model's input size, grey/RGB converted to what it takes",
    format={"type": "string", "enum": list(translation.FORMATS), "default": "png_grid"},
)


@router.post(
    "/{model_id}/translate",
    summary="Translate images",
    response_class=Response,
    openapi_extra=TRANSLATE_BODY,
    responses={
        200: {
            "description": "by `format`: a PNG grid, a zip of PNGs, an .npy array or JSON",
            "content": {
                "image/png": {},
                "application/zip": {},
                "application/octet-stream": {},
                "application/json": {"schema": SamplesJson.model_json_schema()},
            },
        },
        415: error("not a PNG, JPEG or .npy file"),
        422: error("`not_a_translation_model`, or inputs that cannot be read"),
    },
)
async def translate_images(
    model_id: ModelId,
    request: Request,
    reads: ReadsDep,
    caller: TenantDep,
    settings: SettingsDep,
    storage: StorageDep,
    cache: ModelCacheDep,
    batcher: BatcherDep,
    metrics: MetricsDep,
) -> Response:
    """A model trained with task 'translation' (pix2pix) maps each input to its output; the same
    input always gives the same bytes (its dropout is off when serving)."""
    await service.check_model_owned(reads, tenant_id=caller.tenant_id, model_id=model_id)
    async with received_upload(request, max_bytes=settings.max_translate_upload_bytes) as upload:
        encoded = await translation.translate(
            model_id=model_id,
            path=upload.path,
            fmt=upload.fields.get("format", "png_grid"),
            settings=settings,
            storage=storage,
            cache=cache,
            batcher=batcher,
            metrics=metrics,
        )
    return encoded_response(encoded)


@router.get(
    "/{model_id}/export",
    summary="Download a model",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "a zip archive"}},
)
def export_model(
    model_id: ModelId,
    session: SessionDep,
    caller: TenantDep,
    storage: StorageDep,
    format: Annotated[
        Literal["safetensors"], Query(description="the weights' format")
    ] = "safetensors",
) -> Response:
    """A zip of `generator.safetensors` (the EMA generator's weights), `config.json` (what
    rebuilds it: architecture, latent size, classes, sample shape, normalisation) and `spec.json`
    (the job's normalised spec). Unzipped, it is a folder that `python -m gan_engine sample`
    reads."""
    model = service.get_model(session, tenant_id=caller.tenant_id, model_id=model_id)
    body = service.export_zip(model=model, storage=storage)
    disposition = f'attachment; filename="{model_id}.zip"'
    return Response(
        body, media_type="application/zip", headers={"Content-Disposition": disposition}
    )


@router.post(
    "/{model_id}/interpolations",
    summary="Walk between two seeds or two classes",
    response_class=Response,
    responses={
        200: {
            "description": "by `format`: a PNG strip, an animated GIF or an .npy array",
            "content": {"image/png": {}, "image/gif": {}, "application/octet-stream": {}},
        },
        500: error("`model_unreadable`: the stored weights are damaged (our fault; logged)"),
    },
)
async def interpolate_model(
    model_id: ModelId,
    body: InterpolationRequest,
    reads: ReadsDep,
    caller: TenantDep,
    storage: StorageDep,
    cache: ModelCacheDep,
    batcher: BatcherDep,
) -> Response:
    """`{"from_seed": 1, "to_seed": 2, "frames": 8}` slerps between two seeds' z;
    `{"from_class": "Sneaker", "to_class": "Bag", "from_seed": 3}` moves the class embedding
    at fixed z (conditional models). 2 to 64 frames; 2-D point models answer npy only
    (`wrong_model_kind` otherwise), as unconditional ones do for a class walk."""
    await service.check_model_owned(reads, tenant_id=caller.tenant_id, model_id=model_id)
    encoded = await applications.interpolation(
        model_id=model_id, request=body, storage=storage, cache=cache, batcher=batcher
    )
    return encoded_response(encoded)


@router.post(
    "/{model_id}/datasets",
    status_code=201,
    summary="Materialise samples as a dataset",
    response_model=DatasetOut,
    responses={
        413: error("more images than MAX_SYNTHETIC_IMAGES (or MAX_IMAGES) in one request"),
        429: error("`quota_exceeded`: the account's storage quota is used up"),
    },
)
async def materialise_dataset(
    model_id: ModelId,
    body: SyntheticDatasetRequest,
    reads: ReadsDep,
    caller: TenantDep,
    settings: SettingsDep,
    sessions: SessionmakerDep,
    storage: StorageDep,
    cache: ModelCacheDep,
    batcher: BatcherDep,
) -> Any:
    """`{"per_class": 500, "seed": 1}`: 500 generated images of every class, stored as a new
    dataset of this account (listed, usable as `{"dataset": {"id": ...}}` in a job, deletable).
    Conditional image models only (`wrong_model_kind` otherwise)."""
    await service.check_model_owned(reads, tenant_id=caller.tenant_id, model_id=model_id)
    return await applications.materialise(
        model_id=model_id,
        tenant_id=caller.tenant_id,
        request=body,
        sessions=sessions,
        storage=storage,
        settings=settings,
        cache=cache,
        batcher=batcher,
    )


# POST: streams to disk under MAX_SCORE_UPLOAD_BYTES, not the JSON body limit
SCORES_PATH = re.compile(r"/v1/models/[^/]+/scores")
SCORES_BODY = multipart_body(
    "the images: an .npz with `images` uint8 N×H×W or N×H×W×C (optional `labels`, "
    "`class_names`: the class to score each as, for a conditional model), or a .zip of PNG/JPEG "
    "images (in class-named folders to give their classes)",
    **ScoreRequest.model_json_schema()["properties"],
)


@router.post(
    "/{model_id}/scores",
    summary="Anomaly scores of images",
    response_model=ScoresOut,
    openapi_extra=SCORES_BODY,
    responses={
        409: error(
            "`no_discriminator`: a model trained before models kept their discriminator has "
            "only the reconstruction score; `model_cannot_score`: a 2-D points model"
        ),
        413: error("larger than MAX_SCORE_UPLOAD_BYTES or more than MAX_SCORE_IMAGES images"),
        415: error("not an .npz or a .zip of images"),
    },
)
async def score_images(
    model_id: ModelId,
    request: Request,
    reads: ReadsDep,
    caller: TenantDep,
    settings: SettingsDep,
    storage: StorageDep,
    cache: ModelCacheDep,
    batcher: BatcherDep,
) -> Any:
    """One anomaly score per image, higher = more anomalous: `discriminator` = -D(x) of the
    trained discriminator; `reconstruction` = the residual |x - G(z*)| of the best latent z* a
    short seeded Adam search finds (AnoGAN); `method=both` gives both. The images must have the
    model's `image_shape` (square images training padded to it, e.g. 28×28 for a 32×32
    Fashion-MNIST model, are padded the same). At most MAX_SCORE_IMAGES (256) images."""
    await service.check_model_owned(reads, tenant_id=caller.tenant_id, model_id=model_id)
    async with received_upload(request, max_bytes=settings.max_score_upload_bytes) as upload:
        body = scores_service.score_request(upload.fields)
        return await scores_service.score(
            model_id=model_id,
            request=body,
            path=upload.path,
            filename=upload.filename,
            storage=storage,
            cache=cache,
            batcher=batcher,
            settings=settings,
        )
