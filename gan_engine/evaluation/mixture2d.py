"""The PacGAN protocol (Lin et al. 2018) for the 2-D Gaussian mixtures.

A generated point is high-quality if it lies within 3 std of its nearest mode; a mode is captured if
it has at least one high-quality point; the reverse KL compares the histogram of high-quality points
over the modes with the uniform distribution the mixture draws its modes from.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gan_engine.data.mixtures import Mixture
from gan_engine.evaluation.metrics import kl_divergence

HIGH_QUALITY_STDS = 3.0


def mixture_metrics(points: Tensor, mixture: Mixture) -> dict[str, float]:
    """``modes_captured`` (a count, out of K), ``high_quality_fraction`` and ``reverse_kl``.

    ``reverse_kl`` = KL(p_hq || uniform) in nats: modes without high-quality points add nothing
    (0 log 0 = 0), so a generator that covers half the modes evenly scores log 2. With no
    high-quality point at all it is log K, the value of a generator that puts everything on one
    mode (the largest KL from uniform), rather than undefined. Non-finite points count as low
    quality.
    """
    points = points.detach().to("cpu", torch.float32)
    modes = mixture.modes.to(torch.float32)
    distance, nearest = torch.cdist(points, modes).min(dim=1)
    high_quality = distance <= HIGH_QUALITY_STDS * mixture.std  # False for NaN distances
    counts = torch.bincount(nearest[high_quality], minlength=len(modes))
    if counts.sum() == 0:
        reverse_kl = math.log(len(modes))
    else:
        reverse_kl = kl_divergence(counts / counts.sum(), torch.full((len(modes),), 1 / len(modes)))
    return {
        "modes_captured": float((counts > 0).sum()),
        "high_quality_fraction": high_quality.double().mean().item() if len(points) else 0.0,
        "reverse_kl": reverse_kl,
    }
