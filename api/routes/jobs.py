"""``/v1/jobs``: submit a spec, follow the run (progress, events, metrics, samples, stream)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import CeleryDep, SessionDep, SessionmakerDep, SettingsDep, StorageDep, TenantDep
from api.schemas import (
    ERROR_RESPONSES,
    CheckpointOut,
    EventOut,
    JobOut,
    JobStatus,
    MetricSeries,
    Page,
    SampleOut,
)
from api.services import jobs as service
from api.services.pagination import DEFAULT_LIMIT, Limit
from api.services.stream import job_stream
from store import jobs as store_jobs

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

SPEC_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Spec"}}},
    }
}
After = Annotated[str | None, Query(description="the id of the previous page's last item")]
JobId = Annotated[str, Path(description="a job id (job_...)")]


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    summary="Submit a training job",
    openapi_extra=SPEC_BODY,
    responses={
        200: {"model": JobOut, "description": "an Idempotency-Key replay: the existing job"},
        409: {"description": "the Idempotency-Key was used with a different spec"},
        422: {"description": "the spec does not validate; `param` names the field"},
        429: {"description": "too many queued or running jobs"},
    },
)
def submit_job(
    session: SessionDep,
    caller: TenantDep,
    settings: SettingsDep,
    celery: CeleryDep,
    body: Annotated[Any, Body(include_in_schema=False)] = None,
    idempotency_key: Annotated[
        str | None,
        Header(description="retrying with the same key and spec returns the first job (200)"),
    ] = None,
) -> JSONResponse:
    """The body is the training spec (unknown keys are rejected). It is stored normalised, with
    every default filled in; the job is queued (202) and a worker picks it up."""
    job, created = service.submit_job(
        session,
        celery=celery,
        settings=settings,
        tenant_id=caller.tenant_id,
        body=body,
        idempotency_key=idempotency_key,
    )
    return JSONResponse(
        service.job_out(job).model_dump(mode="json"), status_code=202 if created else 200
    )


@router.get("", summary="List jobs")
def list_jobs(
    session: SessionDep,
    caller: TenantDep,
    status: Annotated[JobStatus | None, Query(description="only jobs in this state")] = None,
    limit: Limit = DEFAULT_LIMIT,
    after: After = None,
) -> Page[JobOut]:
    """Newest first."""
    rows, more = service.list_jobs(
        session, tenant_id=caller.tenant_id, status=status, after=after, limit=limit
    )
    return Page[JobOut](data=[service.job_out(j) for j in rows], has_more=more)


@router.get("/{job_id}", summary="Get a job")
def get_job(job_id: JobId, session: SessionDep, caller: TenantDep) -> JobOut:
    return service.job_out(store_jobs.get_job(session, job_id=job_id, tenant_id=caller.tenant_id))


@router.post(
    "/{job_id}/cancel", summary="Cancel a job", responses={409: {"description": "finished"}}
)
def cancel_job(job_id: JobId, session: SessionDep, caller: TenantDep) -> JobOut:
    """A queued job is cancelled at once; a running one is flagged and its worker stops at the
    next heartbeat (`cancel_requested` is true meanwhile)."""
    job = store_jobs.request_cancel(session, job_id=job_id, tenant_id=caller.tenant_id)
    session.commit()
    return service.job_out(job)


@router.get("/{job_id}/events", summary="A job's event log")
def list_events(
    job_id: JobId,
    session: SessionDep,
    caller: TenantDep,
    limit: Limit = DEFAULT_LIMIT,
    after: Annotated[int | None, Query(ge=0, description="the seq of the last event seen")] = None,
) -> Page[EventOut]:
    """Status changes, checkpoints, warnings (mode collapse...) and errors, oldest first."""
    events, more = service.list_events(
        session, tenant_id=caller.tenant_id, job_id=job_id, after=after, limit=limit
    )
    return Page[EventOut](data=events, has_more=more)


@router.get("/{job_id}/metrics", summary="A job's metric time series")
def get_metrics(
    job_id: JobId,
    session: SessionDep,
    caller: TenantDep,
    name: Annotated[
        list[str] | None,
        Query(description="metric names (repeat the parameter); all when omitted"),
    ] = None,
    after_step: Annotated[int | None, Query(ge=0, description="only steps after this")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="logged steps per answer")] = 1000,
) -> MetricSeries:
    """Grouped by name: `{"data": {"d_loss": [[step, value], ...]}, "has_more", "last_step"}`,
    steps ascending; `value` is null for NaN/inf. Training metrics (`d_loss`, `g_loss`,
    `d_real`, ...) come every `monitor.log_every` steps, evaluations (`fid`, ...) every
    `monitor.eval_every`. Page on with `after_step=last_step`."""
    return service.metric_series(
        session,
        tenant_id=caller.tenant_id,
        job_id=job_id,
        names=name,
        after_step=after_step,
        max_steps=limit,
    )


@router.get("/{job_id}/samples", summary="A job's sample grids")
def list_samples(
    job_id: JobId,
    session: SessionDep,
    caller: TenantDep,
    limit: Limit = DEFAULT_LIMIT,
    after: Annotated[int | None, Query(ge=0, description="the last step seen")] = None,
) -> Page[SampleOut]:
    samples, more = service.list_samples(
        session, tenant_id=caller.tenant_id, job_id=job_id, after=after, limit=limit
    )
    return Page[SampleOut](data=samples, has_more=more)


@router.get(
    "/{job_id}/samples/{step}.png",
    summary="A sample grid",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "a PNG grid"}},
)
def get_sample(
    job_id: JobId,
    step: Annotated[int, Path(ge=0)],
    session: SessionDep,
    caller: TenantDep,
    storage: StorageDep,
) -> Response:
    """One row per class for conditional models."""
    png = service.sample_png(
        session, storage=storage, tenant_id=caller.tenant_id, job_id=job_id, step=step
    )
    return Response(
        png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"}
    )


@router.get("/{job_id}/checkpoints", summary="A job's checkpoints")
def list_checkpoints(
    job_id: JobId,
    session: SessionDep,
    caller: TenantDep,
    limit: Limit = DEFAULT_LIMIT,
    after: Annotated[int | None, Query(ge=0, description="the last step seen")] = None,
) -> Page[CheckpointOut]:
    checkpoints, more = service.list_checkpoints(
        session, tenant_id=caller.tenant_id, job_id=job_id, after=after, limit=limit
    )
    return Page[CheckpointOut](data=checkpoints, has_more=more)


@router.get(
    "/{job_id}/stream",
    summary="Follow a job live (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "an event stream"}},
)
async def stream_job(
    job_id: JobId,
    request: Request,
    session: SessionDep,
    caller: TenantDep,
    sessions: SessionmakerDep,
    settings: SettingsDep,
    after: Annotated[int | None, Query(ge=0, description="skip events up to this seq")] = None,
    last_event_id: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> StreamingResponse:
    """Messages `event` (a log row; its `id:` is the seq, so a reconnecting EventSource resumes
    after it), `progress`, `metrics` (latest value per name) and `status` (`{"status", "error",
    "model_id", ...}`), each sent when it changes; `: keep-alive` comments in between. The stream
    ends after the `status` of a finished job (succeeded, failed or cancelled)."""
    await run_in_threadpool(store_jobs.get_job, session, job_id=job_id, tenant_id=caller.tenant_id)
    resume = int(last_event_id) if last_event_id and last_event_id.isdigit() else None
    stream = job_stream(
        sessions=sessions,
        job_id=job_id,
        after_seq=resume if resume is not None else after or 0,
        poll_s=settings.stream_poll_s,
        keepalive_s=settings.stream_keepalive_s,
        disconnected=request.is_disconnected,
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
