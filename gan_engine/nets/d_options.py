"""Options that change how D judges its inputs, independent of the architecture.

- spectral norm (Miyato et al. 2018) on every conv/linear layer of D and on its projection
  embedding;
- minibatch discrimination (Salimans et al. 2016) and minibatch stddev (Karras et al. 2018), which
  let D see statistics of the whole batch, appended to its penultimate features;
- packing (Lin et al. 2018, PacGAN): D judges ``pack`` samples at once, concatenated along dim 1.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

MinibatchKind = Literal["none", "discrimination", "stddev"]


def apply_spectral_norm(discriminator: nn.Module, *, skip: tuple[nn.Module, ...] = ()) -> None:
    """Spectral-normalise every Conv2d and Linear of D, and the given embeddings' weights.

    ``skip`` lists modules left as they are, with everything inside them (D's label-input
    embedding, which is not on the path from x to the logit).
    """
    skipped = {id(m) for module in skip for m in module.modules()}
    for module in list(discriminator.modules()):
        if id(module) not in skipped and isinstance(module, nn.Conv2d | nn.Linear | nn.Embedding):
            spectral_norm(module)


def pack_samples(x: torch.Tensor, pack: int) -> torch.Tensor:
    """(N, C, ...) -> (N // pack, pack * C, ...): each group of ``pack`` consecutive samples."""
    if x.shape[0] % pack:
        raise ValueError(
            f"a packed D (pack {pack}) needs a batch divisible by {pack}, got {len(x)}"
        )
    return x.reshape(x.shape[0] // pack, pack * x.shape[1], *x.shape[2:])


class MinibatchDiscrimination(nn.Module):
    """Appends, per sample and kernel b, ``sum_{j != i} exp(-||M_i,b - M_j,b||_1)`` with M = f T."""

    def __init__(self, in_features: int, num_kernels: int = 100, kernel_dim: int = 5) -> None:
        super().__init__()
        self.num_kernels, self.kernel_dim = num_kernels, kernel_dim
        self.extra_features = num_kernels
        self.T = nn.Linear(in_features, num_kernels * kernel_dim, bias=False)  # T: (F, B, C)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        m = self.T(features).view(-1, self.num_kernels, self.kernel_dim)
        # One (N, N, B) slab per kernel dimension rather than one (N, N, B, C) broadcast: about 5x
        # faster on CPU. Not torch.cdist: gradient penalties need a double backward, cdist has none.
        l1 = sum((m[:, None, :, c] - m[None, :, :, c]).abs() for c in range(self.kernel_dim))
        closeness = torch.exp(-l1).sum(dim=1) - 1.0  # minus exp(0) of each sample with itself
        return torch.cat([features, closeness], dim=1)


class MinibatchStddev(nn.Module):
    """Appends one feature: the mean over features of each feature's std over the batch."""

    extra_features = 1

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(features.var(dim=0, unbiased=False) + 1e-8)
        return torch.cat([features, std.mean().expand(features.shape[0], 1)], dim=1)


class NoMinibatchFeatures(nn.Identity):
    extra_features = 0


def minibatch_features(
    kind: MinibatchKind, in_features: int, num_kernels: int
) -> MinibatchDiscrimination | MinibatchStddev | NoMinibatchFeatures:
    """The batch-statistics layer for ``model.minibatch``; its ``extra_features`` widen D's head."""
    if kind == "discrimination":
        return MinibatchDiscrimination(in_features, num_kernels)
    if kind == "stddev":
        return MinibatchStddev()
    return NoMinibatchFeatures()


def d_normalization(d_norm: str, num_features: int, *, images: bool) -> nn.Module:
    """D's normalisation layer: BatchNorm, a per-sample layer norm (safe with gradient penalties,
    which need each sample's output to depend on that sample only), or none."""
    if d_norm == "batch":
        return nn.BatchNorm2d(num_features) if images else nn.BatchNorm1d(num_features)
    if d_norm == "layer":
        return nn.GroupNorm(1, num_features) if images else nn.LayerNorm(num_features)
    if d_norm == "none":
        return nn.Identity()
    raise ValueError(f"model.d_norm must be 'batch', 'layer' or 'none', got '{d_norm}'")
