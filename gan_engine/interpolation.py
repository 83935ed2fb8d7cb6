"""Latent walks: frames between two seeds (slerp of z) and between two classes at fixed z.

A seed walk interpolates the two seeds' latents along the great circle (spherical linear
interpolation, White 2016, "Sampling Generative Networks"): z of a Gaussian lives near a sphere,
and a straight line between two such points passes through the improbable middle of the ball.

A class walk keeps z fixed and moves the label input linearly from one class to the other: G is
given class weights (1 - t) · onehot(from) + t · onehot(to), which mix the two classes' embedding
vectors wherever G reads the label (the code concatenated to z, ``model.g_conditioning``
'concat', or the conditional BatchNorm gains and biases, 'cbn'); the in-between frames are G's
answer to codes it was never trained on, which is what a class interpolation shows. Both walks at
once (``to_seed`` and ``to_class``) move z and the code together. Frame 0 is the sample
``sample(labels=[from_class], n=1, seed=from_seed)`` gives (the same z and label; float kernels may
round the last bits differently for another batch size), and the last frame that of the other end.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from gan_engine.artifacts import ArtifactError, GeneratorArtifact, Samples
from gan_engine.images import grid, png_bytes
from gan_engine.precision import autocast

MIN_FRAMES, MAX_FRAMES = 2, 64
GIF_FRAME_MS = 120


class ModelKindError(ArtifactError):
    """The request needs a kind of model this one is not (conditional, image)."""


@dataclass(frozen=True)
class Walk:
    frames: Samples  # the frames in order; labels: the class of each frame, None when mixed
    t: np.ndarray  # float64 (F,): each frame's position, 0 to 1


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between vectors ``a`` and ``b`` (D,) at positions ``t`` (F,):
    (F, D). Nearly parallel vectors fall back to linear interpolation."""
    a64, b64, t64 = a.double(), b.double(), t.double()[:, None]
    cos = torch.dot(a64, b64) / (a64.norm() * b64.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if omega.abs() < 1e-6:
        out = (1 - t64) * a64 + t64 * b64
    else:
        out = (torch.sin((1 - t64) * omega) * a64 + torch.sin(t64 * omega) * b64) / torch.sin(omega)
    return out.to(a.dtype)


def resolve_class(artifact: GeneratorArtifact, value: int | str, *, param: str) -> int:
    """A class given by index or by name, as an index of this conditional model."""
    if not artifact.conditional:
        raise ModelKindError(
            f"{param} needs a class-conditional model; this one is unconditional (walk between "
            "seeds instead: from_seed and to_seed)",
            param=param,
        )
    names = artifact.config.class_names or []
    if isinstance(value, str):
        if value not in names:
            raise ArtifactError(f"unknown class {value!r}; this model knows {names}", param=param)
        return names.index(value)
    if not 0 <= value < artifact.config.num_classes:
        raise ArtifactError(
            f"class index {value} out of range 0..{artifact.config.num_classes - 1}", param=param
        )
    return value


def interpolate(
    artifact: GeneratorArtifact,
    *,
    from_seed: int = 0,
    to_seed: int | None = None,
    from_class: int | str | None = None,
    to_class: int | str | None = None,
    frames: int = 8,
    truncation: float | None = None,
) -> Walk:
    """``frames`` samples from (from_seed, from_class) to (to_seed, to_class); a missing ``to_``
    end stays at its ``from_`` value, and at least one must move. A conditional model's
    ``from_class`` defaults to class 0. Same arguments, same frames."""
    if to_seed is None and to_class is None:
        raise ArtifactError(
            "nothing to walk: give to_seed (a seed walk), to_class (a class walk at fixed noise, "
            "conditional models) or both",
            param="to_seed",
        )
    if not MIN_FRAMES <= frames <= MAX_FRAMES:
        raise ArtifactError(
            f"frames must be {MIN_FRAMES} to {MAX_FRAMES}, not {frames}", param="frames"
        )
    start_class = end_class = None
    if to_class is not None:
        end_class = resolve_class(artifact, to_class, param="to_class")
    if from_class is not None:
        start_class = resolve_class(artifact, from_class, param="from_class")
    if artifact.conditional:
        start_class = 0 if start_class is None else start_class
        end_class = start_class if end_class is None else end_class
    t = torch.linspace(0.0, 1.0, frames, dtype=torch.float64)
    z_from = artifact.latents(1, seed=from_seed, truncation=truncation)[0]
    if to_seed is None:
        z = z_from.expand(frames, -1).clone()
    else:
        z = slerp(z_from, artifact.latents(1, seed=to_seed, truncation=truncation)[0], t)
    output = _forward(artifact, z, start_class, end_class, t)
    labels = None
    if start_class is not None and start_class == end_class:
        labels = torch.full((frames,), start_class, dtype=torch.int64)
    return Walk(artifact.samples(output, labels), t.numpy())


def _forward(
    artifact: GeneratorArtifact,
    z: torch.Tensor,
    start_class: int | None,
    end_class: int | None,
    t: torch.Tensor,
) -> torch.Tensor:
    """G's output for z and class weights moving linearly from one class to the other."""
    generator = artifact.generator
    with torch.inference_mode(), autocast(torch.device("cpu"), artifact.bf16)():
        if start_class is None or end_class is None:
            return generator(z, None).float()
        weights = torch.zeros(len(t), generator.num_classes)
        weights[:, start_class] += 1 - t.float()
        weights[:, end_class] += t.float()
        return generator(z, weights).float()


def strip_png(artifact: GeneratorArtifact, walk: Walk) -> bytes:
    """The frames left to right in one row."""
    _require_images(artifact, "png_strip")
    return png_bytes(grid(walk.frames.data, columns=len(walk.frames.data)))


def gif_bytes(artifact: GeneratorArtifact, walk: Walk, frame_ms: int = GIF_FRAME_MS) -> bytes:
    """An animated GIF that plays the walk there and back, looping forever."""
    _require_images(artifact, "gif")
    data = walk.frames.data
    order: Sequence[int] = [*range(len(data)), *range(len(data) - 2, 0, -1)]
    images = [Image.fromarray(data[i]) for i in order]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=frame_ms,
        loop=0,
        optimize=False,
    )
    return buffer.getvalue()


def npy_bytes(walk: Walk) -> bytes:
    """uint8 (F, H, W[, C]) images or float32 (F, 2) points."""
    buffer = io.BytesIO()
    np.save(buffer, walk.frames.data, allow_pickle=False)
    return buffer.getvalue()


def _require_images(artifact: GeneratorArtifact, fmt: str) -> None:
    if artifact.config.kind != "image":
        raise ModelKindError(
            f"format '{fmt}' needs an image model; this one generates 2-D points: use npy",
            param="format",
        )
