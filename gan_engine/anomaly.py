"""Anomaly scores of images under a trained GAN; higher = more anomalous.

- ``discriminator``: the negated logit of the trained discriminator, ``-D(x)``. D learnt to
  score training-like images high, so an image it finds unreal scores high here. For a
  class-conditional D (concat, projection) the class is the one given with the image, else the
  class D finds most real: ``-max_y D(x, y)`` (an image is normal if it is a good image of some
  class). An ``acgan`` D's real/fake logit ignores the class. With minibatch features each image
  is judged alone (a batch of one), so its score never depends on the other images sent; a
  packed D (PacGAN) judges ``pack`` copies of the image. D runs in eval mode: BatchNorm uses the
  running statistics of training.
- ``reconstruction`` (AnoGAN, Schlegl et al. 2017): a short seeded search for the latent whose
  image is closest to ``x``, Adam on z for ``steps`` steps from ``starts`` starting points; the
  score is the best start's residual ``mean |x - G(z)|`` (``l1``) or ``mean (x - G(z))^2``
  (``l2``), plus ``feature_weight`` times the mean L1 distance between D's penultimate features
  of ``x`` and of ``G(z)`` (AnoGAN's discrimination loss; needs the discriminator). For a
  conditional generator the search runs for the class given, else for every class, keeping the
  best. The same images, seed and settings give the same scores.

Images are floats in model space, (N, C, H, W) in [-1, 1]; ``images_from_uint8`` converts the
upload layout. Forward passes use the artifact's precision (bf16 autocast where it samples so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from gan_engine.artifacts import ArtifactError, GeneratorArtifact
from gan_engine.data.fit import fit_images, fits_by_padding
from gan_engine.images import channels_first

ScoreMethod = Literal["discriminator", "reconstruction"]
SCORE_METHODS: tuple[ScoreMethod, ...] = ("discriminator", "reconstruction")
Distance = Literal["l1", "l2"]

MAX_STEPS = 500
MAX_STARTS = 16
MAX_SEARCH_ROWS = 8192  # images x starts x classes searched: latents optimised at once
MAX_SEARCH_WORK = 1 << 21  # ... times steps: generator evaluations in one call
D_BATCH = 256
SEARCH_LR = 0.05


class NoDiscriminator(ArtifactError):
    """The artifact keeps no discriminator (a model trained before scores existed)."""


@dataclass(frozen=True)
class SearchSettings:
    """The latent search of the reconstruction score."""

    steps: int = 100
    starts: int = 4
    seed: int = 0
    distance: Distance = "l1"
    feature_weight: float = 0.0
    lr: float = SEARCH_LR

    def check(self, images: int, classes: int) -> None:
        if not 1 <= self.steps <= MAX_STEPS:
            raise ArtifactError(f"steps must be 1 to {MAX_STEPS}, not {self.steps}", param="steps")
        if not 1 <= self.starts <= MAX_STARTS:
            raise ArtifactError(
                f"starts must be 1 to {MAX_STARTS}, not {self.starts}", param="starts"
            )
        if not 0 <= self.feature_weight <= 100:
            raise ArtifactError(
                f"feature_weight must be 0 to 100, not {self.feature_weight}",
                param="feature_weight",
            )
        if self.distance not in ("l1", "l2"):
            raise ArtifactError(
                f"distance must be 'l1' or 'l2', not {self.distance!r}", param="distance"
            )
        rows = images * self.starts * classes
        if rows > MAX_SEARCH_ROWS:
            raise ArtifactError(
                f"{images} images x {self.starts} starts x {classes} classes = {rows:,} latents "
                f"searched at once; at most {MAX_SEARCH_ROWS:,}: send fewer images or starts",
                param="starts",
            )
        work = rows * self.steps
        if work > MAX_SEARCH_WORK:
            raise ArtifactError(
                f"{images} images x {self.starts} starts x {classes} classes x {self.steps} steps "
                f"= {work:,} generator evaluations; at most {MAX_SEARCH_WORK:,} a call: send "
                "fewer images, or lower steps or starts",
                param="steps",
            )


def images_from_uint8(artifact: GeneratorArtifact, images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) images as the model's floats (N, C, H, W) in [-1, 1].

    They must have the model's shape, or be square images of its channels that training would
    have padded to its size (28×28 for a 32×32 Fashion-MNIST model): those are padded the same.
    """
    if artifact.config.kind != "image":
        raise ArtifactError("anomaly scores need an image model; this one makes 2-D points")
    channels, height, width = artifact.config.sample_shape
    expected = f"{height}×{width}" + ("" if channels == 1 else f"×{channels}")
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) == 0:
        raise ArtifactError(
            f"send uint8 images (N, H, W) or (N, H, W, C) of {expected}; got {images.dtype} "
            f"{images.shape}",
            param="images",
        )
    x = channels_first(images)
    given_c, given_h, given_w = x.shape[1:]
    paddable = given_h == given_w and height == width and fits_by_padding(given_h, height)
    if given_c != channels or not ((given_h, given_w) == (height, width) or paddable):
        given = f"{given_h}×{given_w}" + ("" if given_c == 1 else f"×{given_c}")
        raise ArtifactError(
            f"this model scores images of {expected} (its image_shape); got {given}",
            param="images",
        )
    return fit_images(x.contiguous(), height).float() / 127.5 - 1.0


def _checked_labels(artifact: GeneratorArtifact, labels: torch.Tensor | None, count: int) -> None:
    if labels is None or not artifact.conditional:
        return
    if labels.shape != (count,):
        raise ArtifactError(f"give one label per image ({count}), not {labels.shape}")
    bad = labels[(labels < 0) | (labels >= artifact.config.num_classes)]
    if len(bad):
        raise ArtifactError(
            f"labels {bad[:5].tolist()} out of range 0..{artifact.config.num_classes - 1}",
            param="labels",
        )


def _classes(
    artifact: GeneratorArtifact, labels: torch.Tensor | None, count: int
) -> list[torch.Tensor | None]:
    """The label tensors to try: the given ones, every class in turn, or None (unconditional)."""
    if not artifact.conditional:
        return [None]
    if labels is not None:
        return [labels]
    return [torch.full((count,), k, dtype=torch.int64) for k in range(artifact.config.num_classes)]


def discriminator_scores(
    artifact: GeneratorArtifact, images: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """``-D(x)`` per image, float32 (N,); see the module's doc for the class and batch rules."""
    discriminator = artifact.discriminator
    if discriminator is None:
        raise NoDiscriminator(
            "this model keeps no discriminator (it was trained before models kept one), so it "
            "has no discriminator score; use method 'reconstruction', or retrain it"
        )
    _checked_labels(artifact, labels, len(images))
    model = artifact.config.model
    conditioned = model.conditioning in ("concat", "projection")
    alone = model.minibatch != "none"
    tried = _classes(artifact, labels, len(images)) if conditioned else [None]

    def logits(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if model.pack > 1:
            x = x.repeat_interleave(model.pack, dim=0)
            y = None if y is None else y.repeat_interleave(model.pack, dim=0)
        return discriminator(x, y).logits.float()

    best: torch.Tensor | None = None
    with torch.inference_mode(), artifact.precision_context():
        for y in tried:
            size = 1 if alone else D_BATCH
            parts = [
                logits(x, None if y is None else y[i : i + size])
                for i, x in zip(range(0, len(images), size), images.split(size), strict=True)
            ]
            value = torch.cat(parts)
            best = value if best is None else torch.maximum(best, value)
    assert best is not None
    return -best


def reconstruction_scores(
    artifact: GeneratorArtifact,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    settings: SearchSettings | None = None,
) -> torch.Tensor:
    """The AnoGAN residual of the best latent found, float32 (N,); deterministic for a seed."""
    settings = settings or SearchSettings()
    _checked_labels(artifact, labels, len(images))
    tried = _classes(artifact, labels, len(images))
    settings.check(len(images), len(tried))
    if settings.feature_weight > 0 and artifact.discriminator is None:
        raise NoDiscriminator(
            "feature_weight > 0 compares discriminator features, and this model keeps no "
            "discriminator: use feature_weight 0",
            param="feature_weight",
        )
    count, starts = len(images), settings.starts
    # every image searched from `starts` latents, for every class tried: one batch of rows
    target = images.repeat(starts * len(tried), 1, 1, 1)
    labelled = [t for t in tried if t is not None]
    y = torch.cat([t.repeat(starts) for t in labelled]) if labelled else None
    rng = torch.Generator().manual_seed(settings.seed)
    z0 = torch.randn(count * starts, artifact.config.model.latent_dim, generator=rng)
    z = z0.repeat(len(tried), 1).requires_grad_(True)
    generator = artifact.generator
    target_features = None
    if settings.feature_weight > 0:
        with torch.no_grad(), artifact.precision_context():
            target_features = _features(artifact, target, y)
    optimiser = torch.optim.Adam([z], lr=settings.lr)
    for _ in range(settings.steps):
        with artifact.precision_context():
            loss = _residual(
                artifact, generator(z, y).float(), target, y, target_features, settings
            )
        (gradient,) = torch.autograd.grad(loss.sum(), [z])
        z.grad = gradient
        optimiser.step()
    with torch.inference_mode(), artifact.precision_context():
        final = _residual(artifact, generator(z, y).float(), target, y, target_features, settings)
    return final.float().view(len(tried) * starts, count).min(dim=0).values


def _features(
    artifact: GeneratorArtifact, x: torch.Tensor, labels: torch.Tensor | None
) -> torch.Tensor:
    discriminator = artifact.discriminator
    assert discriminator is not None
    model = artifact.config.model
    if model.pack > 1:
        x = x.repeat_interleave(model.pack, dim=0)
        labels = None if labels is None else labels.repeat_interleave(model.pack, dim=0)
    needs_labels = model.conditioning == "concat"
    return discriminator(x, labels if needs_labels else None).features.float()


def _residual(
    artifact: GeneratorArtifact,
    made: torch.Tensor,
    target: torch.Tensor,
    labels: torch.Tensor | None,
    target_features: torch.Tensor | None,
    settings: SearchSettings,
) -> torch.Tensor:
    """Per row: the pixel distance, plus the weighted feature distance."""
    difference = made - target
    pixel = difference.abs() if settings.distance == "l1" else difference.square()
    residual = pixel.flatten(1).mean(dim=1)
    if target_features is not None:
        made_features = _features(artifact, made, labels)
        residual = residual + settings.feature_weight * (
            (made_features - target_features).abs().mean(dim=1)
        )
    return residual


def anomaly_scores(
    artifact: GeneratorArtifact,
    images: torch.Tensor,
    methods: tuple[ScoreMethod, ...] = SCORE_METHODS,
    labels: torch.Tensor | None = None,
    settings: SearchSettings | None = None,
) -> dict[ScoreMethod, list[float]]:
    """Every asked-for score, per image; one call, so both come from the same images."""
    scores: dict[ScoreMethod, list[float]] = {}
    for method in methods:
        if method == "discriminator":
            values = discriminator_scores(artifact, images, labels)
        else:
            values = reconstruction_scores(artifact, images, labels, settings)
        scores[method] = values.tolist()
    return scores
