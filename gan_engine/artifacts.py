"""Model artifacts: ``generator.safetensors`` + ``config.json`` (+ ``discriminator.safetensors``
for generation models trained since anomaly scores exist), and sampling from them.

A translation model's artifact (``task`` 'translation') holds its U-Net generator and the shape
of the inputs it takes; it translates images instead of sampling.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from gan_engine.errors import EngineError
from gan_engine.images import channels_first, grid, png_bytes, scatter_png, to_uint8
from gan_engine.nets import Discriminator, build_discriminator, build_generator, build_translator
from gan_engine.precision import Precision, autocast, uses_bf16
from gan_engine.spec import ModelSpec

ARTIFACT_FORMAT = 1
WEIGHTS_FILE, CONFIG_FILE = "generator.safetensors", "config.json"
DISCRIMINATOR_FILE = "discriminator.safetensors"  # optional: models trained before it lack it
MAX_SAMPLES = 4096
TRANSLATE_CHUNK = 256


class ArtifactError(EngineError):
    """A missing/corrupt artifact or an impossible sampling request; meant for the user."""


class ArtifactConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: int = ARTIFACT_FORMAT
    kind: Literal["image", "points"]
    sample_shape: list[int]  # (C, H, W) or (2,)
    model: ModelSpec
    num_classes: int  # 0 when unconditional
    class_names: list[str] | None
    dataset: str
    normalisation: str = "images: uint8 = round((x + 1) * 127.5), x in [-1, 1]; points: raw floats"
    training_step: int = 0
    metrics: dict[str, float] = {}
    task: Literal["generation", "translation"] = "generation"
    input_shape: list[int] | None = None  # (C', S, S) of a translation model's inputs
    discriminator: bool = False  # whether DISCRIMINATOR_FILE is part of the artifact


def artifact_files(
    generator: nn.Module,
    *,
    model: ModelSpec,
    sample_shape: tuple[int, ...],
    class_names: list[str] | None,
    dataset: str,
    step: int,
    metrics: dict[str, float] | None = None,
    task: Literal["generation", "translation"] = "generation",
    input_shape: tuple[int, ...] | None = None,
    discriminator: nn.Module | None = None,
) -> dict[str, bytes]:
    """The files of an artifact, as bytes (the CLI writes them, the worker uploads them): the
    generator's weights, config.json, and the discriminator's weights when given."""
    conditional = model.conditioning != "none"
    config = ArtifactConfig(
        kind="points" if len(sample_shape) == 1 else "image",
        sample_shape=list(sample_shape),
        model=model,
        num_classes=len(class_names or []) if conditional else 0,
        class_names=class_names if conditional else None,
        dataset=dataset,
        training_step=step,
        metrics=metrics or {},
        task=task,
        input_shape=None if input_shape is None else list(input_shape),
        discriminator=discriminator is not None,
    )
    files = {
        WEIGHTS_FILE: _weights(generator),
        CONFIG_FILE: config.model_dump_json(indent=2).encode(),
    }
    if discriminator is not None:
        files[DISCRIMINATOR_FILE] = _weights(discriminator)
    return files


def _weights(network: nn.Module) -> bytes:
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    return save_safetensors(state, metadata={"format": str(ARTIFACT_FORMAT)})


def stores_discriminator(config: bytes | str) -> bool:
    """Whether an artifact's config.json says DISCRIMINATOR_FILE belongs to it (False for a
    config that cannot be read: ``GeneratorArtifact.from_bytes`` reports that)."""
    try:
        raw = json.loads(config)
    except ValueError:
        return False
    return isinstance(raw, dict) and raw.get("discriminator") is True


def write_artifact(directory: Path, files: dict[str, bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)


@dataclass
class Samples:
    data: np.ndarray  # uint8 (N, H, W[, C]) images or float32 (N, 2) points
    labels: np.ndarray | None  # int64 (N,) when conditional
    class_names: list[str] | None


class GeneratorArtifact:
    """A trained generator, ready to sample. ``precision``: ``off`` samples in float32 (the same
    bytes on every machine); ``auto`` uses bf16 autocast where the CPU has bf16 units (AMX,
    AVX-512 bf16) for convolutional generators; ``bf16`` always. Whichever it is, the same request
    gives the same bytes on the same machine."""

    def __init__(
        self,
        config: ArtifactConfig,
        generator: nn.Module,
        *,
        precision: Precision = "off",
        discriminator: Discriminator | None = None,
    ) -> None:
        self.config, self.generator = config, generator.eval()
        self.discriminator = None if discriminator is None else discriminator.eval()
        self.bf16 = uses_bf16(precision, torch.device("cpu"), config.model.architecture)
        self._autocast = autocast(torch.device("cpu"), self.bf16)

    def precision_context(self) -> contextlib.AbstractContextManager[Any]:
        """The context this artifact's forward passes run in (bf16 autocast or nothing)."""
        return self._autocast()

    @classmethod
    def from_bytes(
        cls,
        weights: bytes,
        config: bytes | str | dict[str, Any],
        *,
        precision: Precision = "off",
        discriminator: bytes | None = None,
    ) -> GeneratorArtifact:
        """``discriminator``: the DISCRIMINATOR_FILE's bytes, when the artifact has one and the
        caller needs it (anomaly scores); sampling needs only the generator."""
        try:
            raw = json.loads(config) if isinstance(config, bytes | str) else config
            parsed = ArtifactConfig.model_validate(raw)
            state = load_safetensors(weights)
            d_state = None if discriminator is None else load_safetensors(discriminator)
        except (ValueError, ValidationError, SafetensorError) as error:
            raise ArtifactError(f"not a readable generator artifact: {error}") from error
        shape, classes = tuple(parsed.sample_shape), parsed.num_classes
        generator: nn.Module
        if parsed.task == "translation":
            if parsed.input_shape is None:
                raise ArtifactError("a translation artifact's config.json needs input_shape")
            generator = build_translator(
                parsed.model, input_shape=tuple(parsed.input_shape), sample_shape=shape
            )
        else:
            generator = build_generator(parsed.model, sample_shape=shape, num_classes=classes)
        _load(generator, state, "generator")
        d_net = None
        if d_state is not None and parsed.task == "generation":
            d_net = build_discriminator(parsed.model, sample_shape=shape, num_classes=classes)
            _load(d_net, d_state, "discriminator")
        return cls(parsed, generator, precision=precision, discriminator=d_net)

    @classmethod
    def load(cls, directory: str | Path, *, precision: Precision = "off") -> GeneratorArtifact:
        """The artifact in ``directory``, with its discriminator when config.json lists one."""
        directory = Path(directory)
        missing = [n for n in (WEIGHTS_FILE, CONFIG_FILE) if not (directory / n).is_file()]
        if missing:
            raise ArtifactError(f"{directory} has no generator artifact: missing {missing}")
        config = (directory / CONFIG_FILE).read_bytes()
        discriminator = None
        if stores_discriminator(config):
            if not (directory / DISCRIMINATOR_FILE).is_file():
                raise ArtifactError(f"{directory}: config.json lists {DISCRIMINATOR_FILE}, absent")
            discriminator = (directory / DISCRIMINATOR_FILE).read_bytes()
        return cls.from_bytes(
            (directory / WEIGHTS_FILE).read_bytes(),
            config,
            precision=precision,
            discriminator=discriminator,
        )

    @property
    def conditional(self) -> bool:
        return self.config.num_classes > 0

    @property
    def translates(self) -> bool:
        return self.config.task == "translation"

    def translate(self, images: np.ndarray) -> Samples:
        """Translations of uint8 (N, H, W) or (N, H, W, C) images: deterministic (G in eval
        mode, so its dropout is off). Inputs of another size are resized (bicubic) to the
        model's, grey inputs repeated to RGB and RGB ones averaged to grey where needed."""
        inputs = self.prepare_inputs(images)
        with torch.inference_mode(), self._autocast():
            outputs = torch.cat(
                [self.generator(chunk).float() for chunk in inputs.split(TRANSLATE_CHUNK)]
            )
        return self.samples(outputs, None)

    def prepare_inputs(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W[, C]) -> float (N, C', S, S) in [-1, 1] as the model takes them."""
        if not self.translates or self.config.input_shape is None:
            raise ArtifactError(
                "this model generates from noise (samples); only a translation model translates",
                param="model",
            )
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ArtifactError(
                f"inputs must be uint8 images (N, H, W) or (N, H, W, C); got {images.dtype} "
                f"of shape {images.shape}",
                param="input",
            )
        if not 1 <= len(images) <= MAX_SAMPLES:
            raise ArtifactError(
                f"translate 1 to {MAX_SAMPLES} images, not {len(images)}", param="input"
            )
        x = channels_first(images)
        channels, height, width = self.config.input_shape
        if x.shape[1] not in (1, 3) or min(x.shape[2:]) < 1:
            raise ArtifactError(
                f"inputs must have 1 or 3 channels, got {x.shape[1]}", param="input"
            )
        if x.shape[1] != channels:
            x = x.float().mean(1, keepdim=True).round() if channels == 1 else x.repeat(1, 3, 1, 1)
        x = x.float()
        if tuple(x.shape[2:]) != (height, width):
            x = torch.nn.functional.interpolate(
                x, size=(height, width), mode="bicubic", align_corners=False,
                antialias=x.shape[-1] > width,
            ).round().clamp(0, 255)  # fmt: skip
        return x / 127.5 - 1.0

    def resolve_labels(
        self,
        *,
        labels: list[int] | None = None,
        class_names: list[str] | None = None,
        per_class: int | None = None,
        n: int | None = None,
    ) -> tuple[int, list[int] | None]:
        """How many samples of which classes a request means (None labels: unconditional).

        ``labels`` or ``class_names`` with ``n``: ``n`` samples shared equally among them, in
        blocks ("Sneaker", "Bag" and n 4: two sneakers, then two bags); ``n`` must be a multiple
        of how many were given. ``per_class``: that many of every class.
        """
        if self.translates:
            raise ArtifactError(
                "this is a translation model: it translates input images (translate), it does "
                "not sample from noise",
                param="model",
            )
        given = [k for k, v in {"labels": labels, "class_names": class_names,
                                 "per_class": per_class}.items() if v is not None]  # fmt: skip
        if len(given) > 1:
            raise ArtifactError(
                f"give one of labels, class_names or per_class, not {given}", param=given[1]
            )
        selector = given[0] if given else "n"
        if given and not self.conditional:
            raise ArtifactError(
                f"{selector} needs a class-conditional model; this one is not", param=selector
            )
        names = self.config.class_names or []
        if class_names is not None:
            unknown = [c for c in class_names if c not in names]
            if unknown:
                raise ArtifactError(
                    f"unknown class names {unknown[:5]}; this model knows {names}",
                    param="class_names",
                )
            labels = [names.index(c) for c in class_names]
        if labels is not None:
            bad = [k for k in labels if not 0 <= k < self.config.num_classes]
            if bad:
                raise ArtifactError(
                    f"labels {bad[:5]} out of range 0..{self.config.num_classes - 1}",
                    param="labels",
                )
        if per_class is not None:
            labels = [k for k in range(self.config.num_classes) for _ in range(per_class)]
            if n is not None and n != len(labels):
                raise ArtifactError(
                    f"n={n} disagrees with per_class {per_class} x {self.config.num_classes} "
                    f"classes = {len(labels)}: give one of them",
                    param="n",
                )
        elif labels is not None and n is not None:
            if n % len(labels):
                raise ArtifactError(
                    f"n={n} is not a multiple of the {len(labels)} {selector} given, so they "
                    f"cannot share it equally: ask for n={len(labels) * max(1, n // len(labels))}"
                    f", or list the class of every sample",
                    param="n",
                )
            labels = [k for k in labels for _ in range(n // len(labels))]
        if labels is not None:
            count = len(labels)
        else:
            count = 16 if n is None else n
            labels = (
                [k % self.config.num_classes for k in range(count)] if self.conditional else None
            )
        if not 1 <= count <= MAX_SAMPLES:
            raise ArtifactError(f"ask for 1 to {MAX_SAMPLES} samples, not {count}", param=selector)
        return count, labels

    def sample(
        self,
        *,
        labels: list[int] | None = None,
        class_names: list[str] | None = None,
        per_class: int | None = None,
        n: int | None = None,
        seed: int = 0,
        truncation: float | None = None,
    ) -> Samples:
        """Same seed and labels give the same samples."""
        count, resolved = self.resolve_labels(
            labels=labels, class_names=class_names, per_class=per_class, n=n
        )
        label_tensor = None if resolved is None else torch.tensor(resolved, dtype=torch.int64)
        output = self.forward(self.latents(count, seed=seed, truncation=truncation), label_tensor)
        return self.samples(output, label_tensor)

    def latents(self, count: int, *, seed: int, truncation: float | None = None) -> torch.Tensor:
        """z for ``count`` samples: seeded, from a normal truncated to [-t, t] when asked."""
        rng = torch.Generator().manual_seed(seed)
        z = torch.empty(count, self.config.model.latent_dim)
        if truncation is not None:
            if not truncation > 0:
                raise ArtifactError(
                    f"truncation must be > 0 (e.g. 0.7), not {truncation}", param="truncation"
                )
            torch.nn.init.trunc_normal_(z, a=-truncation, b=truncation, generator=rng)
        else:
            z.normal_(generator=rng)
        return z

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The generator's float32 output for ``z`` (several requests may share one call: each
        sample depends on its own z and label only)."""
        with torch.inference_mode(), self._autocast():
            return self.generator(z, labels).float()

    def samples(self, output: torch.Tensor, labels: torch.Tensor | None) -> Samples:
        data = output.numpy() if self.config.kind == "points" else to_uint8(output)
        names = self.config.class_names
        return Samples(data, None if labels is None else labels.numpy(), names)

    def png(self, samples: Samples, columns: int | None = None) -> bytes:
        """A grid, one row per class when the samples came per class."""
        if self.config.kind == "points":
            return scatter_png(samples.data, samples.labels)
        if columns is None:
            columns = _row_length(samples.labels) or min(len(samples.data), 8)
        return png_bytes(grid(samples.data, columns=columns))


def _load(network: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise ArtifactError(f"{what} weights do not match config.json: {error}") from error


def _row_length(labels: np.ndarray | None) -> int | None:
    """The block length when labels come in equal blocks of one class each (per_class, or
    several class names with n): one row per block."""
    if labels is None or len(labels) == 0:
        return None
    changes = np.flatnonzero(np.diff(labels)) + 1
    blocks = np.diff(np.concatenate([[0], changes, [len(labels)]]))
    uniform = len(blocks) > 1 and blocks[0] > 1 and bool(np.all(blocks == blocks[0]))
    return int(blocks[0]) if uniform else None
