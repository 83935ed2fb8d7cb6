"""This account's own settings and figures: ``/v1/usage`` (what it stores, the worker time its
jobs took) and ``/v1/webhook`` (the default webhook of its submissions)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import SessionDep, SettingsDep, TenantDep
from api.json_body import StrictJSONRoute
from api.schemas import ERROR_RESPONSES, StorageBytes, UsageOut, WebhookIn, WebhookOut
from api.services import webhooks
from api.services.usage import usage_of

router = APIRouter(prefix="/v1", tags=["account"], responses=ERROR_RESPONSES,
                   route_class=StrictJSONRoute)  # fmt: skip


@router.get("/usage", summary="This account's usage", response_model=UsageOut)
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


@router.get("/webhook", summary="The default webhook", response_model=WebhookOut)
def get_default_webhook(session: SessionDep, caller: TenantDep) -> object:
    """The webhook of this account's submissions that carry none (404 when none is set)."""
    return webhooks.default_webhook(session, tenant_id=caller.tenant_id)


@router.put("/webhook", summary="Set the default webhook", response_model=WebhookOut)
def put_default_webhook(
    body: WebhookIn, session: SessionDep, caller: TenantDep, settings: SettingsDep
) -> object:
    """From now on, a submission without a `webhook` gets this one (jobs keep what they were
    submitted with)."""
    return webhooks.set_default_webhook(
        session, tenant_id=caller.tenant_id, webhook=body, settings=settings
    )


@router.delete("/webhook", status_code=204, summary="Remove the default webhook")
def delete_default_webhook(session: SessionDep, caller: TenantDep) -> Response:
    webhooks.set_default_webhook(session, tenant_id=caller.tenant_id, webhook=None)
    return Response(status_code=204)
