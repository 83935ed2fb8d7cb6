"""Regularizers of the discriminator and of the generator's objective, one function each."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gan_engine.distributed import SINGLE, World

Critic = Callable[[Tensor], Tensor]  # samples -> raw D outputs, one per D input


def _input_gradient_norms(critic: Critic, inputs: Tensor, pack: int) -> Tensor:
    """||grad_x D(x)||_2 per D input; with packing, one norm over the pack's samples."""
    inputs = inputs.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(inputs).sum(), inputs, create_graph=True)
    return grad.reshape(inputs.shape[0] // pack, -1).norm(2, dim=1)


def gradient_penalty(
    critic: Critic,
    real: Tensor,
    fake: Tensor,
    *,
    weight: float,
    pack: int = 1,
    world: World = SINGLE,
) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): weight * E[(||grad D(x_hat)|| - 1)^2] on interpolates.
    ``world``: the interpolation weights are this rank's share of the global batch's."""
    ones = (1,) * (real.dim() - 1)
    drawn = torch.rand(world.size * real.shape[0] // pack, *ones, device=real.device)
    alpha = world.share(drawn).repeat_interleave(pack, 0)
    interpolates = alpha * real.detach() + (1 - alpha) * fake.detach()
    return weight * ((_input_gradient_norms(critic, interpolates, pack) - 1) ** 2).mean()


def r1_penalty(critic: Critic, real: Tensor, *, gamma: float, pack: int = 1) -> Tensor:
    """R1 (Mescheder et al. 2018): gamma / 2 * E[||grad D(x_real)||^2]."""
    return gamma / 2 * (_input_gradient_norms(critic, real, pack) ** 2).mean()


def feature_matching(real_features: Tensor, fake_features: Tensor) -> Tensor:
    """Salimans et al. 2016: || E f(x) - E f(G(z)) ||^2 over D's penultimate features."""
    return ((real_features.detach().mean(0) - fake_features.mean(0)) ** 2).sum()


def instance_noise_std(initial_std: float, step: int, total_steps: int) -> float:
    """Gaussian noise on every D input, annealed linearly to zero over the run."""
    return initial_std * max(0.0, 1.0 - step / total_steps)


def clip_weights(module: torch.nn.Module, limit: float) -> None:
    """The original WGAN's Lipschitz constraint: every D weight clamped to [-limit, limit]."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.clamp_(-limit, limit)
