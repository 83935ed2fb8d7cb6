"""``/v1/datasets``: upload, list (uploaded or builtin), read, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import SessionDep, SessionmakerDep, SettingsDep, StorageDep, TenantDep
from api.schemas import ERROR_RESPONSES, BuiltinDatasetOut, DatasetOut, Page
from api.services import datasets as service
from api.services.pagination import DEFAULT_LIMIT, Limit
from api.uploads import received_upload

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=ERROR_RESPONSES)

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "an .npz pack (images uint8 N×H×W or N×H×W×C, "
                            "optional labels, optional class_names) or a .zip of class-named "
                            "folders of PNG/JPEG images (all one size; grey or RGB)",
                        },
                        "name": {
                            "type": "string",
                            "maxLength": 200,
                            "description": "default: the file name without extension",
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=201,
    summary="Upload a dataset",
    openapi_extra=UPLOAD_BODY,
    responses={413: {"description": "too large"}, 415: {"description": "not .npz or .zip"}},
)
async def upload_dataset(
    request: Request,
    caller: TenantDep,
    settings: SettingsDep,
    sessions: SessionmakerDep,
    storage: StorageDep,
) -> DatasetOut:
    """Zip archives are checked for unsafe names, entry count and compression ratio; images for
    count and size. A ``.zip`` labels images by folder (class names = folder names, sorted); images
    at the top of the archive make an unlabelled dataset."""
    async with received_upload(request, max_bytes=settings.max_upload_bytes) as upload:
        row = await run_in_threadpool(
            service.create_dataset,
            sessions=sessions,
            storage=storage,
            settings=settings,
            tenant_id=caller.tenant_id,
            path=upload.path,
            filename=upload.filename,
            name=upload.fields.get("name"),
        )
    return service.dataset_out(row)


@router.get("", summary="List datasets")
def list_datasets(
    session: SessionDep,
    caller: TenantDep,
    builtin: Annotated[bool, Query(description="list the builtin datasets instead")] = False,
    limit: Limit = DEFAULT_LIMIT,
    after: Annotated[
        str | None, Query(description="the id of the previous page's last item")
    ] = None,
) -> Page[DatasetOut] | Page[BuiltinDatasetOut]:
    """This account's uploads, newest first; with ``builtin=true`` the builtin datasets, which
    every spec can name as ``{"dataset": {"builtin": name}}``."""
    if builtin:
        return Page[BuiltinDatasetOut](data=list(service.BUILTINS), has_more=False)
    rows, more = service.list_datasets(
        session, tenant_id=caller.tenant_id, after=after, limit=limit
    )
    return Page[DatasetOut](data=[service.dataset_out(r) for r in rows], has_more=more)


@router.get("/{dataset_id}", summary="Get a dataset")
def get_dataset(dataset_id: str, session: SessionDep, caller: TenantDep) -> DatasetOut:
    return service.dataset_out(
        service.get_dataset(session, tenant_id=caller.tenant_id, dataset_id=dataset_id)
    )


@router.delete("/{dataset_id}", status_code=204, summary="Delete a dataset")
def delete_dataset(
    dataset_id: str, session: SessionDep, caller: TenantDep, storage: StorageDep
) -> Response:
    """Refused (409) while a queued or running job trains on it. Models trained on it stay."""
    service.delete_dataset(
        session, storage=storage, tenant_id=caller.tenant_id, dataset_id=dataset_id
    )
    return Response(status_code=204)
