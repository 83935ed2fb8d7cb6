"""``/v1/usage``: what this account stores and the worker time its jobs took."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import SessionDep, SettingsDep, TenantDep
from api.json_body import StrictJSONRoute
from api.schemas import ERROR_RESPONSES, StorageBytes, UsageOut
from api.services.usage import usage_of

router = APIRouter(
    prefix="/v1/usage", tags=["usage"], responses=ERROR_RESPONSES, route_class=StrictJSONRoute
)


@router.get("", summary="This account's usage", response_model=UsageOut)
def get_usage(session: SessionDep, caller: TenantDep, settings: SettingsDep) -> UsageOut:
    """Stored bytes by kind (datasets, sample grids, checkpoints, models) and job-seconds."""
    usage = usage_of(
        session, tenant_id=caller.tenant_id, quota_bytes=settings.max_storage_bytes_per_tenant
    )
    return UsageOut(
        storage_bytes=StorageBytes(
            datasets=usage.datasets_bytes,
            samples=usage.samples_bytes,
            checkpoints=usage.checkpoints_bytes,
            models=usage.models_bytes,
            total=usage.total_bytes,
        ),
        storage_quota_bytes=usage.quota_bytes,
        job_seconds=round(usage.job_seconds, 3),
    )
