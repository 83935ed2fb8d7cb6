"""``/v1/datasets``: upload, list (uploaded or builtin), read, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import SessionDep, SessionmakerDep, SettingsDep, StorageDep, TenantDep
from api.json_body import StrictJSONRoute
from api.params import DEFAULT_LIMIT, AfterId, DatasetId, Limit, TagFilter
from api.schemas import (
    ERROR_RESPONSES,
    BuiltinDatasetDetail,
    BuiltinDatasetOut,
    DatasetOut,
    LabelsPatch,
    Page,
    error,
)
from api.services import dataset_previews as previews
from api.services import datasets as service
from api.uploads import multipart_body, received_upload

PREFIX = "/v1/datasets"
UPLOAD_PATH = PREFIX  # POST: streams to disk under MAX_UPLOAD_BYTES, not the JSON body limit
router = APIRouter(
    prefix=PREFIX, tags=["datasets"], responses=ERROR_RESPONSES, route_class=StrictJSONRoute
)

UPLOAD_BODY = multipart_body(
    "an .npz pack (images uint8 N×H×W or N×H×W×C, optional labels, optional class_names) or a "
    ".zip of class-named folders of PNG/JPEG images (all one size; grey or RGB)",
    name={"type": "string", "maxLength": 200,
          "description": "default: the file name without extension"},
    tags={"type": "string", "description": "comma-separated tags, e.g. shoes,v2"},
    metadata={"type": "string",
              "description": 'a JSON object of strings, e.g. {"source": "scan-2"}'},
)  # fmt: skip


@router.post(
    "",
    status_code=201,
    summary="Upload a dataset",
    response_model=DatasetOut,
    openapi_extra=UPLOAD_BODY,
    responses={
        413: error("larger than MAX_UPLOAD_BYTES, or an archive past its limits"),
        415: error("not an .npz pack or a .zip of images"),
        503: error("`busy`: decoding memory is in use by other uploads; retry after `Retry-After`"),
    },
)
async def upload_dataset(
    request: Request,
    caller: TenantDep,
    settings: SettingsDep,
    sessions: SessionmakerDep,
    storage: StorageDep,
) -> Any:
    """Zip archives are checked for unsafe names, entry count and compression ratio; images for
    count and size. A ``.zip`` labels images by folder (class names = folder names, sorted); images
    at the top of the archive make an unlabelled dataset."""
    async with received_upload(request, max_bytes=settings.max_upload_bytes) as upload:
        labels = service.upload_labels(upload.fields)
        row = await run_in_threadpool(
            service.create_dataset,
            sessions=sessions,
            storage=storage,
            settings=settings,
            tenant_id=caller.tenant_id,
            path=upload.path,
            filename=upload.filename,
            name=upload.fields.get("name"),
            labels=labels,
        )
    return row


@router.get("", summary="List datasets", response_model=Page[DatasetOut] | Page[BuiltinDatasetOut])
def list_datasets(
    session: SessionDep,
    caller: TenantDep,
    builtin: Annotated[bool, Query(description="list the builtin datasets instead")] = False,
    limit: Limit = DEFAULT_LIMIT,
    after: AfterId = None,
    tags: TagFilter = None,
) -> Any:
    """This account's uploads, newest first (with every ``tag`` given); with ``builtin=true``
    the builtin datasets, which every spec can name as ``{"dataset": {"builtin": name}}``."""
    if builtin:
        return Page[BuiltinDatasetOut](data=list(service.BUILTINS), has_more=False)
    rows, more = service.list_datasets(
        session, tenant_id=caller.tenant_id, after=after, limit=limit, tags=tags or []
    )
    return Page[DatasetOut](data=[DatasetOut.model_validate(row) for row in rows], has_more=more)


BuiltinName = Annotated[
    str, Path(max_length=40, pattern=r"^[a-z0-9-]+$", description="a builtin dataset's name")
]
PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "a PNG grid, a row of real images a class"}
}
UNINSTALLED = {503: error("`dataset_unavailable`: its files are not in GANFORGE_DATA_DIR")}
PREVIEW_CACHE = {"Cache-Control": "private, max-age=86400"}


@router.get(
    "/builtin/{name}",
    summary="Get a builtin dataset",
    response_model=BuiltinDatasetDetail,
    responses=UNINSTALLED,
)
def get_builtin_dataset(name: BuiltinName, caller: TenantDep) -> Any:
    """With its images per class, counted from its files (never downloaded: a builtin whose files
    are not installed answers 503 `dataset_unavailable`)."""
    return previews.builtin_detail(name)


@router.get(
    "/builtin/{name}/preview.png",
    summary="Real images of a builtin dataset",
    response_class=Response,
    responses=PNG_RESPONSE | UNINSTALLED,
)
def get_builtin_preview(name: BuiltinName, caller: TenantDep) -> Response:
    """A row of a few images per class, in class order (2-D point sets: a scatter plot)."""
    png = previews.builtin_facts(name).preview
    return Response(png, media_type="image/png", headers=PREVIEW_CACHE)


@router.get(
    "/{dataset_id}/preview.png",
    summary="Real images of a dataset",
    response_class=Response,
    responses=PNG_RESPONSE,
)
def get_dataset_preview(
    dataset_id: DatasetId, session: SessionDep, caller: TenantDep, storage: StorageDep
) -> Response:
    """A row of a few images per class, in class order (unlabelled: the first images)."""
    png = previews.uploaded_preview(
        session, storage=storage, tenant_id=caller.tenant_id, dataset_id=dataset_id
    )
    return Response(png, media_type="image/png", headers=PREVIEW_CACHE)


@router.get("/{dataset_id}", summary="Get a dataset", response_model=DatasetOut)
def get_dataset(dataset_id: DatasetId, session: SessionDep, caller: TenantDep) -> Any:
    return service.get_dataset(session, tenant_id=caller.tenant_id, dataset_id=dataset_id)


@router.patch(
    "/{dataset_id}", summary="Rename, tag or annotate a dataset", response_model=DatasetOut
)
def patch_dataset(
    dataset_id: DatasetId, body: LabelsPatch, session: SessionDep, caller: TenantDep
) -> Any:
    """As `PATCH /v1/jobs/{id}`; a dataset's name cannot be cleared."""
    return service.relabel_dataset(body, session, tenant_id=caller.tenant_id, dataset_id=dataset_id)


@router.delete(
    "/{dataset_id}",
    status_code=204,
    summary="Delete a dataset",
    responses={409: error("a queued or running job trains on it")},
)
def delete_dataset(
    dataset_id: DatasetId, session: SessionDep, caller: TenantDep, storage: StorageDep
) -> Response:
    """Refused (409) while a queued or running job trains on it. Models trained on it stay."""
    service.delete_dataset(
        session, storage=storage, tenant_id=caller.tenant_id, dataset_id=dataset_id
    )
    return Response(status_code=204)
