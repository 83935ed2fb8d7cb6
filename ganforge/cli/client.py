"""The client commands of ``ganforge``: log in, submit and follow jobs, upload datasets, sample
and export models. Exit codes (docs/sdk.md): 0 ok, 1 the API refused, 2 usage, 3 a followed job
failed or was cancelled, 4 the service cannot be reached, 130 interrupted. Data goes to stdout
(``--json`` for scripts), messages and errors to stderr."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from ganforge._http import Call
from ganforge.cli.app import CLIENT_PANEL, Connection, app
from ganforge.client import Client
from ganforge.config import Login, config_path, resolve, save_login
from ganforge.errors import APIConnectionError, APIError
from ganforge.types import Event, Job, StreamMessage

OK, API_ERROR, USAGE, JOB_NOT_SUCCEEDED, CANNOT_CONNECT, INTERRUPTED = 0, 1, 2, 3, 4, 130
SAMPLE_SUFFIXES = (".png", ".npy")

out = Console(soft_wrap=True)  # data
err = Console(stderr=True, soft_wrap=True)  # messages, errors, progress

P = ParamSpec("P")
R = TypeVar("R")

jobs_app = typer.Typer(no_args_is_help=True, help="Training jobs.")
datasets_app = typer.Typer(no_args_is_help=True, help="Uploaded and builtin datasets.")
models_app = typer.Typer(no_args_is_help=True, help="Trained generators.")
app.add_typer(jobs_app, name="jobs", rich_help_panel=CLIENT_PANEL)
app.add_typer(datasets_app, name="datasets", rich_help_panel=CLIENT_PANEL)
app.add_typer(models_app, name="models", rich_help_panel=CLIENT_PANEL)

Json = Annotated[bool, typer.Option("--json", help="print the API's JSON (for scripts)")]
JobId = Annotated[str, typer.Argument(help="a job id (job_...)")]
ModelId = Annotated[str, typer.Argument(help="a model id (model_...)")]


def fail(message: str, code: int) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """The API's errors, a lost connection and Ctrl-C as a message and an exit code."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except APIConnectionError as error:
            raise fail(
                f"{error.message} (is the service up? see `ganforge login`)", CANNOT_CONNECT
            ) from None
        except APIError as error:
            raise fail(str(error), API_ERROR) from None
        except KeyboardInterrupt:
            raise fail("interrupted", INTERRUPTED) from None

    return run


def connect(ctx: typer.Context) -> Client:
    given = ctx.obj if isinstance(ctx.obj, Connection) else Connection()
    return Client(given.url, given.api_key)


def print_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str))


def dump(model: Any) -> Any:
    return model.model_dump(mode="json")


def client_command(
    group: typer.Typer, name: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    def register(command: Callable[P, R]) -> Callable[P, R]:
        wrapped = handles_errors(command)
        panel = CLIENT_PANEL if group is app else None
        group.command(name, rich_help_panel=panel)(wrapped)
        return wrapped

    return register


# --- output ------------------------------------------------------------------------------------


def event_line(event: Event) -> str:
    step = "" if event.step is None else str(event.step)
    return f"{step:>7} {event.level:<7} {event.code}: {event.message}"


def jobs_table(jobs: Iterable[Job]) -> Table:
    table = Table("id", "name", "status", "step", "created", "model", box=None)
    for job in jobs:
        table.add_row(
            job.id, job.name or "", job.status, f"{job.progress.step}/{job.progress.total}",
            job.created_at.strftime("%Y-%m-%d %H:%M"), job.model_id or "",
        )  # fmt: skip
    return table


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def metrics_table(job: Job) -> Table:
    """The final metrics of a finished job, else the newest point of each series."""
    table = Table("metric", "value", title=f"{job.id} {job.status}", box=None)
    if job.summary_metrics:
        for name, value in sorted(job.summary_metrics.items()):
            if not isinstance(value, dict | list):
                table.add_row(name, _number(value))
    else:
        for name, point in sorted(job.latest_metrics.items()):
            table.add_row(name, f"{_number(point.value)} (step {point.step})")
    return table


def show_job(job: Job) -> None:
    out.print(f"[bold]{job.id}[/bold] {job.name or ''}".rstrip(), highlight=False)
    out.print(f"status   {job.status}" + (f" ({job.phase})" if job.phase else ""), highlight=False)
    out.print(f"progress {job.progress.step}/{job.progress.total}", highlight=False)
    if job.error is not None:
        out.print(f"error    {job.error.code}: {job.error.message}", highlight=False)
    if job.model_id:
        out.print(f"model    {job.model_id}", highlight=False)
    if job.tags:
        out.print(f"tags     {', '.join(job.tags)}", highlight=False)
    out.print(metrics_table(job))


def follow(client: Client, job_id: str, *, as_json: bool, progress: bool = True) -> None:
    """Wait with a bar and the events as they come; the final metrics; exit 3 unless it
    succeeded."""

    def on_message(message: StreamMessage) -> None:
        if message.event == "event" and isinstance(message.data, Event):
            err.print(event_line(message.data), highlight=False, markup=False)

    job = client.jobs.wait(job_id, progress=progress, on_message=on_message)
    if as_json:
        print_json(dump(job))
    else:
        out.print(metrics_table(job))
    if job.status != "succeeded":
        detail = f": {job.error.code}: {job.error.message}" if job.error else ""
        raise fail(f"{job.id} {job.status}{detail}", JOB_NOT_SUCCEEDED)
    err.print(f"{job.id} succeeded; model {job.model_id}", highlight=False)


# --- login -------------------------------------------------------------------------------------


@client_command(app)
def login(
    url: Annotated[str, typer.Argument(help="the service, e.g. http://127.0.0.1:8000")],
    key: Annotated[
        str, typer.Option("--key", help="an API key (gf_...)", prompt=True, hide_input=True)
    ],
    verify: Annotated[bool, typer.Option(help="check the key against the service first")] = True,
) -> None:
    """Save URL and KEY (mode 0600) for the client commands and ganforge.Client()."""
    if not url.startswith(("http://", "https://")):
        raise fail(f"{url}: the URL must start with http:// or https://", USAGE)
    login = Login(url.rstrip("/"), key.strip())
    if verify:
        with Client(login.url, login.api_key) as client:
            client.json(Call("GET", "/v1/jobs", params={"limit": 1}))
    path = save_login(login)
    err.print(f"logged in to {login.url}; saved in {path}", highlight=False)


@client_command(app)
def logout() -> None:
    """Forget what `ganforge login` saved."""
    path = config_path()
    path.unlink(missing_ok=True)
    err.print(f"removed {path}", highlight=False)


@client_command(app)
def whoami(ctx: typer.Context) -> None:
    """The URL and the key (masked) the client commands would use."""
    given = ctx.obj if isinstance(ctx.obj, Connection) else Connection()
    found = resolve(given.url, given.api_key)
    masked = f"{found.api_key[:7]}…" if found.api_key else "(none)"
    out.print(f"url     {found.url}\napi key {masked}", highlight=False)


# --- jobs --------------------------------------------------------------------------------------


@client_command(app)
def submit(
    ctx: typer.Context,
    spec: Annotated[Path, typer.Argument(help="a YAML or JSON spec", exists=True, dir_okay=False)],
    follow_job: Annotated[
        bool, typer.Option("--follow", "-f", help="wait for it with a progress bar")
    ] = False,
    idempotency_key: Annotated[
        str | None, typer.Option(help="resubmitting with it returns the first job")
    ] = None,
    as_json: Json = False,
) -> None:
    """Submit a training job; prints its id (or, with --follow, its final metrics)."""
    with connect(ctx) as client:
        job = client.jobs.create(spec, idempotency_key=idempotency_key)
        err.print(f"submitted {job.id} ({job.status})", highlight=False)
        if follow_job:
            follow(client, job.id, as_json=as_json)
        elif as_json:
            print_json(dump(job))
        else:
            out.print(job.id, highlight=False)


@client_command(jobs_app, "list")
def jobs_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="only jobs in this state")] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="only jobs with this tag (repeatable)")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 20,
    as_json: Json = False,
) -> None:
    """Jobs, newest first."""
    with connect(ctx) as client:
        jobs = []
        for job in client.jobs.list(status=status, tag=tag):
            jobs.append(job)
            if len(jobs) >= limit:
                break
        if as_json:
            print_json([dump(job) for job in jobs])
        else:
            out.print(jobs_table(jobs))


@client_command(jobs_app, "show")
def jobs_show(ctx: typer.Context, job_id: JobId, as_json: Json = False) -> None:
    """A job's status, progress, error and metrics."""
    with connect(ctx) as client:
        job = client.jobs.get(job_id)
    if as_json:
        print_json(dump(job))
    else:
        show_job(job)


def _act(ctx: typer.Context, action: Callable[[Client], Job], as_json: bool) -> None:
    with connect(ctx) as client:
        job = action(client)
    if as_json:
        print_json(dump(job))
    else:
        out.print(f"{job.id} {job.status}", highlight=False)


@client_command(jobs_app, "cancel")
def jobs_cancel(ctx: typer.Context, job_id: JobId, as_json: Json = False) -> None:
    """Cancel a queued or running job."""
    _act(ctx, lambda client: client.jobs.cancel(job_id), as_json)


@client_command(jobs_app, "pause")
def jobs_pause(ctx: typer.Context, job_id: JobId, as_json: Json = False) -> None:
    """Pause a job at a checkpoint (a running one at its next heartbeat)."""
    _act(ctx, lambda client: client.jobs.pause(job_id), as_json)


@client_command(jobs_app, "resume")
def jobs_resume(ctx: typer.Context, job_id: JobId, as_json: Json = False) -> None:
    """Queue a paused job again."""
    _act(ctx, lambda client: client.jobs.resume(job_id), as_json)


@client_command(jobs_app, "continue")
def jobs_continue(
    ctx: typer.Context,
    job_id: JobId,
    steps: Annotated[int, typer.Option(min=1, help="the new total of steps")],
    follow_job: Annotated[
        bool, typer.Option("--follow", "-f", help="wait for the new job")
    ] = False,
    as_json: Json = False,
) -> None:
    """A new job going on from a finished job's newest checkpoint to STEPS in all."""
    with connect(ctx) as client:
        job = client.jobs.continue_(job_id, steps)
        err.print(f"{job.id} continues {job_id}", highlight=False)
        if follow_job:
            follow(client, job.id, as_json=as_json)
        elif as_json:
            print_json(dump(job))
        else:
            out.print(job.id, highlight=False)


@client_command(jobs_app, "delete")
def jobs_delete(ctx: typer.Context, job_id: JobId) -> None:
    """Delete a finished job with its events, metrics, samples and checkpoints."""
    with connect(ctx) as client:
        client.jobs.delete(job_id)
    err.print(f"deleted {job_id}", highlight=False)


@client_command(jobs_app, "wait")
def jobs_wait(
    ctx: typer.Context,
    job_id: JobId,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    as_json: Json = False,
) -> None:
    """Wait for a job to finish; exit 3 unless it succeeded."""
    with connect(ctx) as client:
        follow(client, job_id, as_json=as_json, progress=progress)


@client_command(jobs_app, "logs")
def jobs_logs(
    ctx: typer.Context,
    job_id: JobId,
    follow_job: Annotated[
        bool, typer.Option("--follow", "-f", help="go on until it finishes")
    ] = False,
    as_json: Json = False,
) -> None:
    """A job's event log (status changes, checkpoints, warnings, errors), oldest first."""
    with connect(ctx) as client:
        if not follow_job:
            events = client.jobs.events(job_id)
            if as_json:
                print_json([dump(event) for event in events])
            for event in [] if as_json else events:
                out.print(event_line(event), highlight=False, markup=False)
            return
        for message in client.jobs.stream(job_id):
            if message.event == "event" and isinstance(message.data, Event):
                line = message.data.model_dump_json() if as_json else event_line(message.data)
                out.print(line, highlight=False, markup=False)


@client_command(jobs_app, "webhooks")
def jobs_webhooks(ctx: typer.Context, job_id: JobId, as_json: Json = False) -> None:
    """The job's webhook deliveries, oldest first, with their tries."""
    with connect(ctx) as client:
        deliveries = client.jobs.webhook_deliveries(job_id)
    if as_json:
        print_json([dump(delivery) for delivery in deliveries])
        return
    table = Table("id", "event", "status", "tries", "last answer", box=None)
    for delivery in deliveries:
        last = delivery.attempts[-1] if delivery.attempts else None
        answer = "" if last is None else (last.error or str(last.status_code))
        table.add_row(delivery.id, delivery.event, delivery.status, str(len(delivery.attempts)),
                      answer)  # fmt: skip
    out.print(table)


@client_command(jobs_app, "metrics")
def jobs_metrics(
    ctx: typer.Context,
    job_id: JobId,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", help="write every point as CSV here")
    ] = None,
    tensorboard: Annotated[
        Path | None, typer.Option(help="write a zip of TensorBoard event files here")
    ] = None,
    as_json: Json = False,
) -> None:
    """The final (or newest) metrics; --csv and --tensorboard download the whole run."""
    with connect(ctx) as client:
        if csv_out is not None:
            err.print(f"wrote {client.jobs.metrics_csv(job_id, csv_out)}", highlight=False)
        if tensorboard is not None:
            err.print(f"wrote {client.jobs.tensorboard(job_id, tensorboard)}", highlight=False)
        if csv_out is None and tensorboard is None:
            if as_json:
                print_json(client.jobs.metrics(job_id))
            else:
                out.print(metrics_table(client.jobs.get(job_id)))


# --- datasets ----------------------------------------------------------------------------------


@client_command(datasets_app, "upload")
def datasets_upload(
    ctx: typer.Context,
    path: Annotated[
        Path, typer.Argument(help="an .npz, a .zip, or a folder of class folders", exists=True)
    ],
    name: Annotated[str | None, typer.Option(help="default: the file name")] = None,
    as_json: Json = False,
) -> None:
    """Upload a dataset; prints its id (use it as {"dataset": {"id": ...}} in a spec)."""
    with connect(ctx) as client:
        dataset = client.datasets.upload(path, name=name)
    if as_json:
        print_json(dump(dataset))
        return
    classes = f", {dataset.num_classes} classes" if dataset.num_classes else ""
    err.print(
        f"{dataset.name}: {dataset.n_images} images {dataset.image_shape}{classes}", highlight=False
    )
    out.print(dataset.id, highlight=False)


@client_command(datasets_app, "list")
def datasets_list(
    ctx: typer.Context,
    builtin: Annotated[
        bool, typer.Option("--builtin", help="the builtin datasets instead")
    ] = False,
    as_json: Json = False,
) -> None:
    """This account's uploaded datasets (or the builtin ones)."""
    with connect(ctx) as client:
        rows: list[Any] = client.datasets.builtins() if builtin else client.datasets.list()
    if as_json:
        print_json([dump(row) for row in rows])
        return
    table = Table("id" if not builtin else "kind", "name", "samples", "shape", "classes", box=None)
    for row in rows:
        shape = row.sample_shape if builtin else row.image_shape
        table.add_row(
            row.kind if builtin else row.id,
            row.name,
            str(row.n_images),
            str(shape),
            str(row.num_classes),
        )
    out.print(table)


@client_command(datasets_app, "delete")
def datasets_delete(ctx: typer.Context, dataset_id: Annotated[str, typer.Argument()]) -> None:
    """Delete an uploaded dataset (refused while a job trains on it)."""
    with connect(ctx) as client:
        client.datasets.delete(dataset_id)
    err.print(f"deleted {dataset_id}", highlight=False)


# --- models ------------------------------------------------------------------------------------


@client_command(models_app, "list")
def models_list(ctx: typer.Context, as_json: Json = False) -> None:
    """The generators of succeeded jobs, newest first."""
    with connect(ctx) as client:
        models = client.models.list()
    if as_json:
        print_json([dump(model) for model in models])
        return
    table = Table("id", "name", "job", "shape", "classes", box=None)
    for model in models:
        table.add_row(
            model.id, model.name or "", model.job_id, str(model.image_shape), str(model.num_classes)
        )
    out.print(table)


@client_command(models_app, "show")
def models_show(ctx: typer.Context, model_id: ModelId) -> None:
    """A model as JSON."""
    with connect(ctx) as client:
        print_json(dump(client.models.get(model_id)))


@client_command(models_app, "delete")
def models_delete(ctx: typer.Context, model_id: ModelId) -> None:
    """Delete a model (its job stays)."""
    with connect(ctx) as client:
        client.models.delete(model_id)
    err.print(f"deleted {model_id}", highlight=False)


@client_command(models_app, "score")
def models_score(
    ctx: typer.Context,
    model_id: ModelId,
    images: Annotated[
        Path, typer.Argument(help="an .npz (images, optional labels), a .zip of PNG/JPEG, or .npy")
    ],
    method: Annotated[str, typer.Option(help="discriminator | reconstruction | both")] = "both",
    seed: Annotated[int | None, typer.Option(min=0, help="the latent search's seed")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="latent search steps")] = None,
    starts: Annotated[int | None, typer.Option(min=1, help="latent search starts")] = None,
    as_json: Json = False,
) -> None:
    """Anomaly scores of images under a model, one per image; higher = more anomalous."""
    source: Any = images
    if images.suffix.lower() == ".npy":
        import numpy as np

        source = np.load(images, allow_pickle=False)
    with connect(ctx) as client:
        found = client.models.scores(
            model_id, source, method=method, seed=seed, steps=steps, starts=starts
        )
    if as_json:
        print_json(dump(found))
        return
    table = Table("image", *found.scores, box=None)
    for k in range(found.count):
        table.add_row(str(k), *(f"{values[k]:.4f}" for values in found.scores.values()))
    out.print(table)


@client_command(app, "usage")
def usage(ctx: typer.Context, as_json: Json = False) -> None:
    """What this account stores, by kind, and the worker time its jobs took."""
    with connect(ctx) as client:
        found = client.usage()
    if as_json:
        print_json(dump(found))
        return
    table = Table("stored", "bytes", box=None)
    for kind, size in found.storage_bytes.model_dump().items():
        table.add_row(kind, f"{size:,}")
    out.print(table)
    quota = found.storage_quota_bytes
    out.print(f"quota: {'none' if quota is None else f'{quota:,} bytes'}", highlight=False)
    out.print(f"job-seconds: {found.job_seconds:,.1f}", highlight=False)


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


@client_command(app)
def sample(
    ctx: typer.Context,
    model_id: ModelId,
    out_path: Annotated[
        Path, typer.Option("--out", "-o", help="FILE.png (a grid) or FILE.npy (the array)")
    ],
    labels: Annotated[str | None, typer.Option(help="class labels, e.g. 0,3")] = None,
    class_names: Annotated[str | None, typer.Option(help="class names, e.g. Sneaker,Bag")] = None,
    per_class: Annotated[int | None, typer.Option(min=1, help="this many of every class")] = None,
    n: Annotated[
        int | None, typer.Option("--n", "-n", min=1, help="how many (shared by the classes given)")
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="same seed, same samples")] = None,
    truncation: Annotated[float | None, typer.Option(help="truncate z to [-t, t]")] = None,
) -> None:
    """Generate samples from a model into a PNG grid or an .npy array."""
    suffix = out_path.suffix.lower()
    if suffix not in SAMPLE_SUFFIXES:
        raise fail(f"--out must end in .png or .npy, not {out_path.name!r}", USAGE)
    given = [option for option, value in (("--labels", labels), ("--class-names", class_names),
             ("--per-class", per_class)) if value is not None]  # fmt: skip
    if len(given) > 1:
        raise fail(f"give at most one of {', '.join(given)}", USAGE)
    try:
        label_list = None if labels is None else [int(label) for label in _split(labels) or []]
    except ValueError:
        raise fail(f"--labels takes integers separated by commas, not {labels!r}", USAGE) from None
    request: dict[str, Any] = {
        "labels": label_list, "class_names": _split(class_names), "per_class": per_class, "n": n,
        "seed": seed, "truncation": truncation,
    }  # fmt: skip
    with connect(ctx) as client:
        if suffix == ".png":
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_bytes(client.models.sample_grid(model_id, **request))
            err.print(f"wrote {out_path}", highlight=False)
        else:
            import numpy as np

            array = client.models.sample(model_id, **request)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            np.save(out_path, array)
            err.print(f"wrote {out_path}: {array.dtype} {tuple(array.shape)}", highlight=False)


@client_command(app)
def translate(
    ctx: typer.Context,
    model_id: ModelId,
    input_path: Annotated[
        Path, typer.Option("--input", "-i", help="FILE.png / FILE.jpg, or FILE.npy (a batch)")
    ],
    out_path: Annotated[
        Path, typer.Option("--out", "-o", help="FILE.png (the image, or a grid) or FILE.npy")
    ],
) -> None:
    """Translate images with a model trained with task 'translation'."""
    if out_path.suffix.lower() not in SAMPLE_SUFFIXES:
        raise fail(f"--out must end in .png or .npy, not {out_path.name!r}", USAGE)
    import numpy as np

    out_path.parent.mkdir(parents=True, exist_ok=True)
    as_png, batch_in = out_path.suffix.lower() == ".png", input_path.suffix.lower() == ".npy"
    with connect(ctx) as client:
        if as_png and batch_in:  # a batch as one PNG: the service's grid
            out_path.write_bytes(client.models.translate_grid(model_id, input_path))
            err.print(f"wrote {out_path}: a grid", highlight=False)
            return
        array = client.models.translate(model_id, input_path)
    if as_png:  # one image in (PNG/JPEG): the image itself, at the model's size
        from PIL import Image

        image = array[0]
        Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image).save(
            out_path, format="PNG"
        )
    else:
        np.save(out_path, array)
    what = f"{array.dtype} {tuple(array.shape)}"
    err.print(f"wrote {out_path}: {what}", highlight=False)


@client_command(app)
def export(
    ctx: typer.Context,
    model_id: ModelId,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="a folder (unzipped) or FILE.zip")],
) -> None:
    """Download a model's weights, config and spec (`python -m gan_engine sample DIR` reads it)."""
    with connect(ctx) as client:
        path = client.models.export(model_id, out_dir)
    err.print(f"wrote {path}", highlight=False)


def _class_option(value: str | None) -> int | str | None:
    """A class by index when it is a number, else by name (a model whose names are numbers
    names class k "k", so both readings agree)."""
    if value is None:
        return None
    return int(value) if value.isdigit() else value


@client_command(app)
def interpolate(
    ctx: typer.Context,
    model_id: ModelId,
    out_path: Annotated[
        Path, typer.Option("--out", "-o", help="FILE.png (a strip), FILE.gif or FILE.npy")
    ],
    from_seed: Annotated[int, typer.Option(min=0, help="the first frame's seed")] = 0,
    to_seed: Annotated[int | None, typer.Option(min=0, help="the last frame's (slerp)")] = None,
    from_class: Annotated[str | None, typer.Option(help="name or index (default 0)")] = None,
    to_class: Annotated[str | None, typer.Option(help="walk to it at fixed noise")] = None,
    frames: Annotated[int, typer.Option(min=2, max=64, help="2 to 64")] = 8,
    truncation: Annotated[float | None, typer.Option(help="truncate z to [-t, t]")] = None,
) -> None:
    """A latent walk between two seeds and/or two classes into a PNG strip, a GIF or .npy."""
    suffix = out_path.suffix.lower()
    if suffix not in (".png", ".gif", ".npy"):
        raise fail(f"--out must end in .png, .gif or .npy, not {out_path.name!r}", USAGE)
    if to_seed is None and to_class is None:
        raise fail("give --to-seed, --to-class or both", USAGE)
    request: dict[str, Any] = {
        "from_seed": from_seed, "to_seed": to_seed, "from_class": _class_option(from_class),
        "to_class": _class_option(to_class), "frames": frames, "truncation": truncation,
    }  # fmt: skip
    with connect(ctx) as client:
        if suffix == ".npy":
            import numpy as np

            array = client.models.interpolate(model_id, **request)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            np.save(out_path, array)
            err.print(f"wrote {out_path}: {array.dtype} {tuple(array.shape)}", highlight=False)
            return
        image_format = "gif" if suffix == ".gif" else "png_strip"
        body = client.models.interpolation_image(model_id, **request, format=image_format)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(body)
        err.print(f"wrote {out_path}", highlight=False)


@client_command(models_app, "materialize")
def models_materialize(
    ctx: typer.Context,
    model_id: ModelId,
    per_class: Annotated[int, typer.Option(min=1, help="images of every class")],
    seed: Annotated[int, typer.Option(min=0, help="same seed, same images")] = 0,
    truncation: Annotated[float | None, typer.Option(help="truncate z to [-t, t]")] = None,
    name: Annotated[str | None, typer.Option(help="default: MODEL-synthetic")] = None,
    tags: Annotated[str | None, typer.Option(help="comma-separated tags")] = None,
    as_json: Json = False,
) -> None:
    """Store generated samples of every class as a new dataset (conditional image models)."""
    with connect(ctx) as client:
        dataset = client.models.materialize_dataset(
            model_id, per_class, seed=seed, truncation=truncation, name=name, tags=_split(tags)
        )
    if as_json:
        print_json(dump(dataset))
    else:
        err.print(f"{dataset.name}: {dataset.n_images} images", highlight=False)
        out.print(dataset.id, highlight=False)
