"""Regularizers of the discriminator and of the generator's objective, one function each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

Critic = Callable[[Tensor], Tensor]  # samples -> raw D outputs, one per D input


def _input_gradient_norms(critic: Critic, inputs: Tensor, pack: int) -> Tensor:
    """||grad_x D(x)||_2 per D input; with packing, one norm over the pack's samples."""
    inputs = inputs.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(inputs).sum(), inputs, create_graph=True)
    return grad.reshape(inputs.shape[0] // pack, -1).norm(2, dim=1)


def gradient_penalty(
    critic: Critic, real: Tensor, fake: Tensor, *, weight: float, pack: int = 1
) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): weight * E[(||grad D(x_hat)|| - 1)^2] on interpolates."""
    ones = (1,) * (real.dim() - 1)
    alpha = torch.rand(real.shape[0] // pack, *ones, device=real.device).repeat_interleave(pack, 0)
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


class LeCam:
    """LeCam regularisation (Tseng et al. 2021, "Regularizing Generative Adversarial Networks
    under Limited Data"): weight * (E[relu(D(x) - a_fake)^2] + E[relu(a_real - D(G(z)))^2]),
    a_real and a_fake being EMAs (decay 0.99) of D's mean outputs on reals and fakes, as in the
    authors' code. The anchors start at the first batch's means."""

    DECAY = 0.99

    def __init__(self, weight: float, device: torch.device) -> None:
        self.weight = weight
        self.anchors = torch.zeros(2, device=device)  # (real, fake)
        self.updates = 0

    def __call__(self, real: Tensor, fake: Tensor) -> Tensor:
        real, fake = real.float(), fake.float()
        means = torch.stack((real.detach().mean(), fake.detach().mean()))
        self.anchors = torch.lerp(means, self.anchors, self.DECAY if self.updates else 0.0)
        self.updates += 1
        anchor_real, anchor_fake = self.anchors
        pushed = F.relu(real - anchor_fake).pow(2).mean() + F.relu(anchor_real - fake).pow(2).mean()
        return self.weight * pushed

    def state_dict(self) -> dict[str, Any]:
        return {"anchors": self.anchors.cpu(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is not None:  # a checkpoint of a run without LeCam: anchors start afresh
            self.anchors = state["anchors"].to(self.anchors.device)
            self.updates = int(state["updates"])


def clip_weights(module: torch.nn.Module, limit: float) -> None:
    """The original WGAN's Lipschitz constraint: every D weight clamped to [-limit, limit]."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.clamp_(-limit, limit)
