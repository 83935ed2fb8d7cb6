"""``/v1/jobs``: submit a spec, follow the run (progress, events, metrics, samples, stream)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api.deps import (
    AsyncEngineDep,
    CeleryDep,
    PollerDep,
    SessionDep,
    SessionmakerDep,
    SettingsDep,
    StorageDep,
    TenantDep,
)
from api.errors import ApiError
from api.json_body import StrictJSONRoute
from api.params import (
    DEFAULT_LIMIT,
    LAST_EVENT_ID,
    MAX_ID_CHARS,
    MAX_INT32,
    MAX_WAIT_S,
    PRINTABLE_ASCII,
    AfterId,
    Cursor,
    JobId,
    Limit,
    MetricNames,
    Step,
    TagFilter,
)
from api.schemas import (
    ERROR_RESPONSES,
    CheckpointOut,
    ContinueRequest,
    EventOut,
    JobOut,
    JobStatus,
    LabelsPatch,
    MetricSeries,
    Page,
    SampleOut,
    WebhookDeliveryOut,
    error,
)
from api.services import jobs as service
from api.services import run_exports as exports
from api.services import webhooks
from api.services.stream import job_stream
from api.services.tenancy import relabel_from
from store.models import Job

router = APIRouter(
    prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES, route_class=StrictJSONRoute
)

SPEC_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Spec"}}},
    }
}


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    summary="Submit a training job",
    openapi_extra=SPEC_BODY,
    responses={
        200: {"model": JobOut, "description": "an Idempotency-Key replay: the existing job"},
        409: error("the Idempotency-Key was used with a different spec"),
        422: error("`invalid_spec`: the spec does not validate; `param` names the field"),
        429: error("too many queued or running jobs in this account"),
    },
)
async def submit_job(
    caller: TenantDep,
    settings: SettingsDep,
    celery: CeleryDep,
    engine: AsyncEngineDep,
    body: Annotated[Any, Body(include_in_schema=False)] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=service.MAX_IDEMPOTENCY_KEY_CHARS,
            description="retrying with the same key and spec returns the first job (200); "
            "visible ASCII, at most 255 characters",
        ),
    ] = None,
) -> JSONResponse:
    """The body is the training spec (unknown keys are rejected). It is stored resolved, with
    every default filled in; the job is queued (202) and a worker picks it up."""
    if idempotency_key is not None and not PRINTABLE_ASCII.fullmatch(idempotency_key):
        raise ApiError(
            422, "Idempotency-Key must be visible ASCII characters", param="Idempotency-Key"
        )
    job, created = await service.submit_job(
        engine,
        celery=celery,
        settings=settings,
        tenant_id=caller.tenant_id,
        body=body,
        idempotency_key=idempotency_key,
    )
    return JSONResponse(
        JobOut.model_validate(job).model_dump(mode="json"), status_code=202 if created else 200
    )


@router.get("", summary="List jobs", response_model=Page[JobOut])
def list_jobs(
    session: SessionDep,
    caller: TenantDep,
    status: Annotated[JobStatus | None, Query(description="only jobs in this state")] = None,
    tags: TagFilter = None,
    limit: Limit = DEFAULT_LIMIT,
    after: AfterId = None,
) -> Any:
    """Newest first."""
    rows, more = service.list_jobs(
        session, tenant_id=caller.tenant_id, status=status, tags=tags or (), after=after,
        limit=limit,
    )  # fmt: skip
    return {"data": rows, "has_more": more}


@router.get(
    "/{job_id}",
    summary="Get a job",
    response_model=JobOut,
    responses={304: {"description": "`If-None-Match` holds the job's current ETag"}},
)
async def get_job(
    job_id: JobId,
    caller: TenantDep,
    poller: PollerDep,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_S,
            description="long poll: answer as soon as the job's status changes (or, with "
            "If-None-Match, as soon as anything changes), at the latest after this many seconds",
        ),
    ] = 0,
    if_none_match: Annotated[
        str | None,
        Header(alias="If-None-Match", max_length=200, description="an ETag from a previous answer"),
    ] = None,
) -> Response:
    """Every answer carries an `ETag`; sending it back as `If-None-Match` gets a 304 while the
    job is unchanged. With `wait`, the call returns when the job has changed (a finished job at
    once), so a client need not poll in a loop."""
    view = await poller.view(
        tenant_id=caller.tenant_id, job_id=job_id, wait_s=wait, if_none_match=if_none_match
    )
    headers = {"ETag": view.etag, "Cache-Control": "private, no-cache"}
    if if_none_match is not None and view.etag in if_none_match.split(", "):
        return Response(status_code=304, headers=headers)
    return Response(view.body, media_type="application/json", headers=headers)


@router.post(
    "/{job_id}/cancel",
    summary="Cancel a job",
    response_model=JobOut,
    responses={409: error("the job is already finished")},
)
def cancel_job(job_id: JobId, session: SessionDep, caller: TenantDep) -> Any:
    """A queued job is cancelled at once; a running one is flagged and its worker stops at the
    next heartbeat (`cancel_requested` is true meanwhile)."""
    return service.cancel_job(session, tenant_id=caller.tenant_id, job_id=job_id)


@router.patch("/{job_id}", summary="Rename, tag or annotate a job", response_model=JobOut)
def patch_job(job_id: JobId, body: LabelsPatch, session: SessionDep, caller: TenantDep) -> Any:
    """The fields given change: `name` (null clears it), `tags` (replaced), `metadata` (merged
    key by key; a null value removes its key). The spec never changes."""
    return relabel_from(body, session, Job, object_id=job_id, tenant_id=caller.tenant_id)


@router.post(
    "/{job_id}/pause",
    summary="Pause a job",
    response_model=JobOut,
    responses={409: error("the job is already finished")},
)
def pause_job(job_id: JobId, session: SessionDep, caller: TenantDep) -> Any:
    """A queued job is paused at once; a running one is flagged (`pause_requested`) and its
    worker saves a checkpoint at its next heartbeat and stops, leaving the job `paused` and
    itself free. Pausing a paused job changes nothing."""
    return service.pause_job(session, tenant_id=caller.tenant_id, job_id=job_id)


@router.post(
    "/{job_id}/resume",
    summary="Resume a paused job",
    response_model=JobOut,
    responses={
        409: error("the job is already finished"),
        429: error("`limit_exceeded`: the account's queued and running jobs are at the limit"),
    },
)
def resume_job(
    job_id: JobId, session: SessionDep, caller: TenantDep, celery: CeleryDep, settings: SettingsDep
) -> Any:
    """A paused job is queued again and goes on from the checkpoint it paused at; a running
    job whose pause has not yet taken effect keeps running. Resuming a queued or running job
    changes nothing."""
    return service.resume_job(
        session, celery=celery, settings=settings, tenant_id=caller.tenant_id, job_id=job_id
    )


@router.post(
    "/{job_id}/continue",
    status_code=201,
    summary="Continue a finished job to more steps",
    response_model=JobOut,
    responses={
        409: error("the job is not finished, or saved no checkpoint"),
        429: error("`limit_exceeded`: the account's queued and running jobs are at the limit"),
    },
)
def continue_job(
    job_id: JobId,
    body: ContinueRequest,
    session: SessionDep,
    caller: TenantDep,
    storage: StorageDep,
    celery: CeleryDep,
    settings: SettingsDep,
) -> Any:
    """A new job (`continued_from` names this one) with the same spec and `steps` in all,
    starting from this job's newest checkpoint: its own events, metrics from that step on and a
    new model at the end. This job and its model stay. On CPU, with a constant learning rate,
    the continued run is bit-identical to one run to `steps`; a `linear_decay` schedule follows
    the new total from the checkpoint on."""
    return service.continue_job(
        session,
        storage=storage,
        celery=celery,
        settings=settings,
        tenant_id=caller.tenant_id,
        job_id=job_id,
        steps=body.steps,
    )


@router.delete(
    "/{job_id}",
    status_code=204,
    summary="Delete a job",
    responses={409: error("the job is queued or running, or the model it trained exists")},
)
def delete_job(
    job_id: JobId, session: SessionDep, caller: TenantDep, storage: StorageDep
) -> Response:
    """A finished job with its events, metrics, sample grids and checkpoints, rows and stored
    objects. Refused (409) while it is queued or running (cancel it first) and while the model
    it trained exists (delete the model first)."""
    service.delete_job(session, storage=storage, tenant_id=caller.tenant_id, job_id=job_id)
    return Response(status_code=204)


@router.get("/{job_id}/events", summary="A job's event log", response_model=Page[EventOut])
def list_events(
    job_id: JobId,
    session: SessionDep,
    caller: TenantDep,
    limit: Limit = DEFAULT_LIMIT,
    after: Cursor = None,
) -> Any:
    """Status changes, checkpoints, warnings (mode collapse...) and errors, oldest first."""
    rows, more = service.list_events(
        session, tenant_id=caller.tenant_id, job_id=job_id, after=after, limit=limit
    )
    return {"data": rows, "has_more": more}


@router.get(
    "/{job_id}/webhook_deliveries",
    summary="A job's webhook deliveries",
    response_model=Page[WebhookDeliveryOut],
)
def list_webhook_deliveries(
    job_id: JobId,
    session: SessionDep,
    caller: TenantDep,
    limit: Limit = DEFAULT_LIMIT,
    after: AfterId = None,
) -> Any:
    """Every notification sent to the job's webhook, oldest first, with each try: when, how
    long, the receiver's status code or the error."""
    rows, more = webhooks.list_deliveries(
        session, tenant_id=caller.tenant_id, job_id=job_id, after=after, limit=limit
    )
    return {"data": rows, "has_more": more}


@router.get("/{job_id}/metrics", summary="A job's metric time series")
def get_metrics(
    job_id: JobId,
    session: SessionDep,
    caller: TenantDep,
    name: MetricNames = None,
    after_step: Annotated[
        int | None, Query(ge=0, le=MAX_INT32, description="only steps after this")
    ] = None,
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


@router.get(
    "/{job_id}/metrics.csv",
    summary="A job's metrics as CSV",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "one row a logged step"}},
)
def get_metrics_csv(
    job_id: JobId, session: SessionDep, caller: TenantDep, sessions: SessionmakerDep
) -> StreamingResponse:
    """`step,<metric>,...` (metrics in name order), then one row per logged step, ascending; an
    empty cell: not logged at that step (evaluations come every `monitor.eval_every`), `nan`:
    logged as NaN/inf. Streamed, for runs of any length."""
    names = exports.metric_names(session, tenant_id=caller.tenant_id, job_id=job_id)
    return StreamingResponse(
        exports.metrics_csv(sessions, job_id, names),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{job_id}-metrics.csv"'},
    )


@router.get(
    "/{job_id}/tensorboard",
    summary="A job's run as TensorBoard event files",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "a zip of one run"}},
)
def get_tensorboard(
    job_id: JobId, caller: TenantDep, sessions: SessionmakerDep, storage: StorageDep
) -> FileResponse:
    """A zip holding `<job_id>/events.out.tfevents.*`: every metric as a scalar (grouped as
    `losses/`, `discriminator/`, `gradients/`, `speed/`, `quality/`), up to
    100 sample grids evenly spread over the run (the last one always), and the warnings and
    errors as text. Unzip it and run `tensorboard --logdir .`; a running job exports what it
    has so far."""
    path = exports.tensorboard_zip(sessions, storage, tenant_id=caller.tenant_id, job_id=job_id)
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"{job_id}-tensorboard.zip",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


@router.get("/{job_id}/samples", summary="A job's sample grids", response_model=Page[SampleOut])
def list_samples(
    job_id: JobId,
    session: SessionDep,
    caller: TenantDep,
    limit: Limit = DEFAULT_LIMIT,
    after: Cursor = None,
) -> Any:
    rows, more = service.list_samples(
        session, tenant_id=caller.tenant_id, job_id=job_id, after=after, limit=limit
    )
    return {"data": rows, "has_more": more}


@router.get(
    "/{job_id}/samples/{step}.png",
    summary="A sample grid",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "a PNG grid"}},
)
def get_sample(
    job_id: JobId, step: Step, session: SessionDep, caller: TenantDep, storage: StorageDep
) -> Response:
    """One row per class for conditional models."""
    png = service.sample_png(
        session, storage=storage, tenant_id=caller.tenant_id, job_id=job_id, step=step
    )
    return Response(
        png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"}
    )


@router.get(
    "/{job_id}/checkpoints", summary="A job's checkpoints", response_model=Page[CheckpointOut]
)
def list_checkpoints(
    job_id: JobId,
    session: SessionDep,
    caller: TenantDep,
    limit: Limit = DEFAULT_LIMIT,
    after: Cursor = None,
) -> Any:
    rows, more = service.list_checkpoints(
        session, tenant_id=caller.tenant_id, job_id=job_id, after=after, limit=limit
    )
    return {"data": rows, "has_more": more}


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
    after: Cursor = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=MAX_ID_CHARS,
            description="sent by a reconnecting EventSource: resume after this event seq",
        ),
    ] = None,
) -> StreamingResponse:
    """Messages `event` (a log row; its `id:` is the seq, so a reconnecting EventSource resumes
    after it), `progress`, `metrics` (latest value per name) and `status` (`{"status", "phase",
    "error", "model_id", ...}`), each sent when it changes; `: keep-alive` comments in between.
    The stream ends after the `status` of a finished job (succeeded, failed or cancelled)."""
    resume = after or 0
    if last_event_id is not None:
        if not LAST_EVENT_ID.fullmatch(last_event_id) or int(last_event_id) > MAX_INT32:
            raise ApiError(
                422,
                f"Last-Event-ID must be an event seq: ASCII digits, at most {MAX_INT32}",
                param="Last-Event-ID",
            )
        resume = int(last_event_id)
    await run_in_threadpool(service.get_job, session, tenant_id=caller.tenant_id, job_id=job_id)
    stream = job_stream(
        sessions=sessions,
        job_id=job_id,
        after_seq=resume,
        poll_s=settings.stream_poll_s,
        keepalive_s=settings.stream_keepalive_s,
        disconnected=request.is_disconnected,
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
