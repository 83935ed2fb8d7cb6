"""The adversarial losses: one pair of functions per loss, one dict from spec names to them.

Every function takes D's raw outputs (logits; D has no sigmoid) and returns a scalar to minimise.
``real_target`` is 1 - label_smoothing (one-sided smoothing: fakes keep target 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor


def bce_discriminator(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """-[t log D(x) + (1 - t) log(1 - D(x))] - log(1 - D(G(z))), D = sigmoid(logit)."""
    real_loss = F.binary_cross_entropy_with_logits(real, torch.full_like(real, real_target))
    return real_loss + F.softplus(fake).mean()


def minimax_generator(fake: Tensor) -> Tensor:
    """Goodfellow et al.'s original, saturating objective: minimise log(1 - D(G(z)))."""
    return -F.softplus(fake).mean()


def non_saturating_generator(fake: Tensor) -> Tensor:
    """The -log D(G(z)) heuristic (often called "vanilla" elsewhere)."""
    return F.softplus(-fake).mean()


def wasserstein_critic(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    return fake.mean() - real.mean()


def wasserstein_generator(fake: Tensor) -> Tensor:
    return -fake.mean()


def hinge_discriminator(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def least_squares_discriminator(real: Tensor, fake: Tensor, real_target: float = 1.0) -> Tensor:
    """LSGAN (Mao et al. 2017) with a = 0, b = 1."""
    return 0.5 * ((real - real_target) ** 2).mean() + 0.5 * (fake**2).mean()


def least_squares_generator(fake: Tensor) -> Tensor:
    return 0.5 * ((fake - 1.0) ** 2).mean()


LossKind = Literal["minimax", "non_saturating", "wasserstein", "wgan_gp", "hinge", "least_squares"]


@dataclass(frozen=True)
class LossPair:
    discriminator: Callable[[Tensor, Tensor, float], Tensor]
    generator: Callable[[Tensor], Tensor]
    # D's output is a probability's logit (BCE losses): D(x) = sigmoid(logit) means something.
    bce: bool = False
    # D is an unbounded critic (Wasserstein, hinge): its output has no fixed zero.
    critic: bool = False
    # Real targets exist, so one-sided label smoothing applies.
    target_based: bool = False
    # The loss's own regularizer and its default: WGAN-GP's penalty, WGAN's clipping.
    default_gradient_penalty: float | None = None
    default_weight_clip: float | None = None
    # The least D loss (plus a tolerance) a saturated D reaches; None when unbounded below.
    d_loss_floor: float | None = None
    # The raw output between D's real and fake targets: sign(D(x) - boundary) says which side D
    # puts x on (ADA's overfitting heuristic r_t); None for critics without a fixed zero.
    decision_boundary: float | None = None


LOSSES: dict[LossKind, LossPair] = {
    "minimax": LossPair(
        bce_discriminator, minimax_generator, bce=True, target_based=True, decision_boundary=0.0
    ),
    "non_saturating": LossPair(
        bce_discriminator,
        non_saturating_generator,
        bce=True,
        target_based=True,
        decision_boundary=0.0,
    ),
    "wasserstein": LossPair(
        wasserstein_critic, wasserstein_generator, critic=True, default_weight_clip=0.01
    ),
    "wgan_gp": LossPair(
        wasserstein_critic, wasserstein_generator, critic=True, default_gradient_penalty=10.0
    ),
    "hinge": LossPair(
        hinge_discriminator,
        wasserstein_generator,
        critic=True,
        d_loss_floor=0.05,
        decision_boundary=0.0,
    ),
    "least_squares": LossPair(
        least_squares_discriminator,
        least_squares_generator,
        target_based=True,
        d_loss_floor=0.01,
        decision_boundary=0.5,
    ),
}
assert tuple(LOSSES) == get_args(LossKind), "every LossKind has exactly one entry"
