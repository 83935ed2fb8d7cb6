"""The 2-D Gaussian mixtures of the PacGAN protocol (Lin et al. 2018).

ring8: 8 Gaussians on the unit circle at angles 2*pi*k/8, std 0.01.
grid25: 25 Gaussians at {-4, -2, 0, 2, 4}^2, std 0.05.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Mixture:
    modes: torch.Tensor  # float32 (K, 2)
    std: float

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n points and the index of the mode each was drawn from."""
        labels = torch.randint(len(self.modes), (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator) * self.std
        return self.modes[labels] + noise, labels


def _ring8() -> Mixture:
    angles = torch.arange(8, dtype=torch.float64) * 2 * math.pi / 8
    return Mixture(torch.stack([angles.cos(), angles.sin()], 1).float(), 0.01)


def _grid25() -> Mixture:
    axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    return Mixture(torch.cartesian_prod(axis, axis), 0.05)


MIXTURES: dict[str, Mixture] = {"ring8": _ring8(), "grid25": _grid25()}
