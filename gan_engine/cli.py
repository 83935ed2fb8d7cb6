"""``python -m gan_engine train|sample|interpolate``: the engine on its own, against a folder."""

from __future__ import annotations

import contextlib
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from gan_engine import distributed
from gan_engine.artifacts import GeneratorArtifact, write_artifact
from gan_engine.callbacks import Callback
from gan_engine.checkpoint import CheckpointError, load_checkpoint, newest_checkpoint
from gan_engine.data import DatasetError
from gan_engine.evaluation import FolderEvaluatorCache
from gan_engine.events import Event, Phase
from gan_engine.images import decode_image, png_bytes
from gan_engine.interpolation import MAX_FRAMES, gif_bytes, interpolate, npy_bytes, strip_png
from gan_engine.precision import Precision
from gan_engine.progress import RunProgress
from gan_engine.run import build_trainer, export_files, load_training_data
from gan_engine.run_folder import RunFolder
from gan_engine.spec import Spec, SpecError, load_spec
from gan_engine.trainer import TrainingDiverged, TrainResult, pick_device

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=2)


class EtaColumn(ProgressColumn):
    """The run's seconds left as ``RunProgress`` counts them, evaluations included."""

    def __init__(self, run: RunProgress) -> None:
        super().__init__()
        self.run = run

    def render(self, task: Task) -> Text:
        eta = self.run.eta_s()
        shown = "-:--:--" if eta is None else str(timedelta(seconds=round(eta)))
        return Text(f"ETA {shown}", style="progress.remaining")


class ProgressBar(Callback):
    """The run's phase, steps, ETA, losses and speed on one line; warnings printed above it."""

    def __init__(self, progress: Progress, total: int, start: int) -> None:
        self.progress = progress
        self.task = progress.add_task(Phase.TRAINING, total=total, completed=start, status="")

    def on_phase(self, phase: Phase, step: int) -> None:
        self.progress.update(self.task, description=str(phase), completed=step)

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        d_loss = f"d {metrics['d_loss']:.3f}  " if "d_loss" in metrics else ""  # L1-only: no D
        losses = f"{d_loss}g {metrics['g_loss']:.3f}"
        status = f"{losses}  {metrics['images_per_s']:.0f} img/s"
        self.progress.update(self.task, completed=step, status=status)

    def on_event(self, event: Event) -> None:
        if event.level != "info":
            self.progress.console.print(
                f"[yellow]{event.level}[/] step {event.step}: {event.message}"
            )


@app.command()
def train(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="a .yaml or .json spec")],
    out: Annotated[Path, typer.Option("--out", help="run folder")],
    resume: Annotated[
        bool, typer.Option(help="continue from the newest checkpoint in --out")
    ] = False,
    data_dir: Annotated[
        Path | None, typer.Option(envvar="GANFORGE_DATA_DIR", help="MNIST/Fashion-MNIST files")
    ] = None,
    cache_dir: Annotated[
        Path, typer.Option(help="where trained evaluator classifiers are cached")
    ] = Path.home() / ".cache" / "ganforge" / "evaluators",
    tensorboard: Annotated[
        bool, typer.Option(help="also write TensorBoard event files into --out/tensorboard")
    ] = False,
) -> None:
    """Train a GAN from SPEC into the folder --out (``training.devices`` N > 1: N ranks under
    torchrun, started here)."""
    try:
        spec = load_spec(spec_path)
        newest = newest_checkpoint(out / "checkpoints")
        if newest and not resume:
            raise _fail(f"{out} already holds a run; pass --resume to continue it, or pick --out")
        if resume and newest is None:
            raise _fail(f"--resume: no checkpoint in {out / 'checkpoints'}")
        devices = spec.training.devices
        if devices > 1 and not distributed.under_torchrun():
            args = ["train", str(spec_path), "--out", str(out), "--cache-dir", str(cache_dir)]
            args += ["--resume"] * resume + ["--tensorboard"] * tensorboard
            args += [] if data_dir is None else ["--data-dir", str(data_dir)]
            raise typer.Exit(distributed.launch(devices, "gan_engine", args))
        with distributed.process_group(pick_device(spec.training.device)) as world:
            if world.size != devices:
                raise _fail(f"{world.size} ranks were started for training.devices {devices}")
            result = _train_ranks(spec, out, newest, world, data_dir, cache_dir, tensorboard)
            if world.is_main:  # here: on a rank, leaving the block ends the process
                summary = "  ".join(f"{k} {v:.4g}" for k, v in result.summary.items())
                err.print(f"done at step {result.step}: {out / 'generator.safetensors'}  {summary}")
    except (SpecError, DatasetError, CheckpointError, TrainingDiverged) as error:
        raise _fail(str(error)) from None


def _train_ranks(
    spec: Spec,
    out: Path,
    newest: Path | None,
    world: distributed.World,
    data_dir: Path | None,
    cache_dir: Path,
    tensorboard: bool,
) -> TrainResult:
    """One rank's part of ``train``: every rank trains; rank 0 writes the folder and exports."""
    spec, dataset = load_training_data(spec, data_dir=data_dir)
    callbacks: list[Callback] = []
    if world.is_main:
        folder = RunFolder(out)
        callbacks.append(folder)
        (out / "spec.json").write_text(spec.model_dump_json(indent=2))
    trainer = build_trainer(
        spec, dataset, callbacks=callbacks, evaluator_cache=FolderEvaluatorCache(cache_dir)
    )
    if newest is not None:
        trainer.load_state_dict(load_checkpoint(newest))
        if world.is_main:
            folder.forget_after(trainer.step)
    with contextlib.ExitStack() as stack:
        if tensorboard and world.is_main:
            from gan_engine.tensorboard import TensorBoardLog  # imports TensorBoard's writer

            resumed_at = trainer.step if newest is not None else None
            board = TensorBoardLog(out / "tensorboard", resumed_at=resumed_at)
            trainer.callbacks.append(stack.enter_context(contextlib.closing(board)))
        if world.is_main:
            columns = (
                TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                EtaColumn(trainer.progress), TextColumn("{task.fields[status]}"),
            )  # fmt: skip
            progress = stack.enter_context(Progress(*columns, console=err))
            trainer.callbacks.append(ProgressBar(progress, spec.training.steps, trainer.step))
        result = trainer.fit()
        if world.is_main:
            trainer.enter_phase(Phase.EXPORTING)
            write_artifact(out, export_files(trainer, result))
    return result


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


@app.command()
def sample(
    run_dir: Annotated[Path, typer.Argument(metavar="DIR", help="a finished run folder")],
    out: Annotated[Path, typer.Option("--out", help="FILE.png (a grid) or FILE.npy")],
    n: Annotated[int | None, typer.Option("--n", help="how many samples")] = None,
    labels: Annotated[str | None, typer.Option(help="class indices, e.g. 0,3,3")] = None,
    class_names: Annotated[str | None, typer.Option(help="e.g. Sneaker,Bag")] = None,
    per_class: Annotated[int | None, typer.Option(help="this many of every class")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    truncation: Annotated[float | None, typer.Option(help="truncate z to [-t, t]")] = None,
    precision: Annotated[
        Precision,
        typer.Option(
            help="off: float32, the same bytes everywhere; auto: bf16 where the CPU has "
            "bf16 units, as the service samples"
        ),
    ] = "off",
) -> None:
    """Sample from a trained generator; the same seed gives the same samples."""
    if out.suffix not in (".png", ".npy"):
        raise _fail(f"--out must end in .png or .npy, not '{out.suffix}'")
    try:
        artifact = GeneratorArtifact.load(run_dir, precision=precision)
        label_list = None if labels is None else [int(x) for x in _csv(labels) or []]
        names = _csv(class_names)
        samples = artifact.sample(
            labels=label_list, class_names=names, per_class=per_class, n=n, seed=seed,
            truncation=truncation,
        )  # fmt: skip
    except ValueError as error:  # ArtifactError, and int() of a bad --labels
        raise _fail(str(error)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, samples.data)
    else:
        out.write_bytes(artifact.png(samples, columns=None if per_class is None else per_class))
    err.print(f"wrote {len(samples.data)} samples to {out}")


@app.command()
def translate(
    run_dir: Annotated[Path, typer.Argument(metavar="DIR", help="a finished translation run")],
    input_path: Annotated[
        Path,
        typer.Option(
            "--input", help="FILE.png / FILE.jpg (one image) or FILE.npy (uint8 N×H×W[×C])"
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="FILE.png (one image, or a grid) or .npy")],
    precision: Annotated[
        Precision, typer.Option(help="off: float32, the same bytes everywhere; auto: bf16")
    ] = "off",
) -> None:
    """Translate input images with a trained translation model (task 'translation')."""
    if out.suffix not in (".png", ".npy"):
        raise _fail(f"--out must end in .png or .npy, not '{out.suffix}'")
    try:
        artifact = GeneratorArtifact.load(run_dir, precision=precision)
        if input_path.suffix == ".npy":
            images = np.load(input_path, allow_pickle=False)
            images = images if images.ndim == 4 or (images.ndim == 3 and images.shape[-1] not in
                                                      (1, 3)) else images[None]  # fmt: skip
        else:
            images = decode_image(input_path.read_bytes())[None]
        samples = artifact.translate(images)
    except OSError as error:
        raise _fail(f"cannot read {input_path}: {error}") from None
    except ValueError as error:  # ArtifactError, an unreadable image or .npy
        raise _fail(str(error)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, samples.data)
    elif len(samples.data) == 1:
        out.write_bytes(png_bytes(samples.data[0]))
    else:
        out.write_bytes(artifact.png(samples))
    err.print(f"wrote {len(samples.data)} translations to {out}")


def _class_arg(value: str | None) -> int | str | None:
    """A class by name, or by index when it is a number (a model whose class names are numbers,
    like digits', names class k "k", so both readings agree)."""
    if value is None:
        return None
    return int(value) if value.isdigit() else value


@app.command("interpolate")
def interpolate_command(
    run_dir: Annotated[Path, typer.Argument(metavar="DIR", help="a finished run folder")],
    out: Annotated[
        Path, typer.Option("--out", help="FILE.png (a strip), FILE.gif (animated) or FILE.npy")
    ],
    from_seed: Annotated[int, typer.Option(help="the seed of the first frame's z")] = 0,
    to_seed: Annotated[int | None, typer.Option(help="the last frame's seed (slerp)")] = None,
    from_class: Annotated[
        str | None, typer.Option(help="name or index; conditional models (default 0)")
    ] = None,
    to_class: Annotated[
        str | None, typer.Option(help="name or index: walk to it at fixed noise")
    ] = None,
    frames: Annotated[int, typer.Option(help=f"2 to {MAX_FRAMES}")] = 8,
    truncation: Annotated[float | None, typer.Option(help="truncate z to [-t, t]")] = None,
    precision: Annotated[Precision, typer.Option(help="as for sample")] = "off",
) -> None:
    """A latent walk between two seeds and/or two classes; the same arguments give the same file."""
    if out.suffix not in (".png", ".gif", ".npy"):
        raise _fail(f"--out must end in .png, .gif or .npy, not '{out.suffix}'")
    try:
        artifact = GeneratorArtifact.load(run_dir, precision=precision)
        walk = interpolate(
            artifact, from_seed=from_seed, to_seed=to_seed, from_class=_class_arg(from_class),
            to_class=_class_arg(to_class), frames=frames, truncation=truncation,
        )  # fmt: skip
        encoders = {".png": strip_png, ".gif": gif_bytes}
        body = npy_bytes(walk) if out.suffix == ".npy" else encoders[out.suffix](artifact, walk)
    except ValueError as error:  # ArtifactError
        raise _fail(str(error)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(body)
    err.print(f"wrote {frames} frames to {out}")


def main() -> None:
    app(prog_name=f"{Path(sys.executable).name} -m gan_engine")
