"""Augmentation of what D sees: every real and fake image, in every D pass (penalties included).

Each transform is plain torch ops on the batch, differentiable in the images, so G learns
through them. Randomness comes from torch's global RNG of the batch's device, which checkpoints
already save: a resumed run draws the same augmentations.

- ``DiffAugment`` (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
  Training"): its policies applied to every image.
- ``AdaptiveAugment`` (Karras et al. 2020, "Training Generative Adversarial Networks with
  Limited Data"): flips, 90° rotations, integer translation, brightness, contrast and saturation,
  each applied to each image with probability ``p``; every ``interval`` D steps ``p`` moves by
  ``batch · interval / (ada_kimg · 1000)`` up when r_t = E[sign(D(real))] is above the target,
  down when below.

Colour on 1-channel images: brightness and contrast apply; saturation leaves grey unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from gan_engine.checkpoint import CheckpointError
from gan_engine.losses import LOSSES
from gan_engine.spec import AugmentSpec, Spec

TRANSLATION_RATIO = 0.125  # the largest shift, as a fraction of the side (both papers)
CUTOUT_RATIO = 0.5  # DiffAugment's cutout square, as a fraction of the side
ADA_BRIGHTNESS_STD = 0.2  # in units of the [-1, 1] range's half-width, as ADA's 0.2 of [0, 1]
ADA_CONTRAST_STD = 0.5 * math.log(2)  # log-normal, as ADA
ADA_SATURATION_STD = math.log(2)


def _per_sample(x: Tensor, values: Tensor) -> Tensor:
    """(B,) values shaped to broadcast over (B, C, H, W)."""
    return values.to(x.dtype).view(-1, *(1,) * (x.dim() - 1))


def _like_layout(out: Tensor, x: Tensor) -> Tensor:
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def translate(x: Tensor, dy: Tensor, dx: Tensor, *, reflect: bool) -> Tensor:
    """Each image shifted by integer (dy, dx) pixels; what comes in is zeros or the reflection."""
    batch, _, height, width = x.shape
    rows = torch.arange(height, device=x.device) - dy.view(-1, 1)  # (B, H) source rows
    cols = torch.arange(width, device=x.device) - dx.view(-1, 1)
    if reflect:
        rows, cols = _reflected(rows, height), _reflected(cols, width)
    inside = ((rows >= 0) & (rows < height)).unsqueeze(2) & ((cols >= 0) & (cols < width))[:, None]
    b = torch.arange(batch, device=x.device).view(-1, 1, 1)
    picked = x.permute(0, 2, 3, 1)[b, rows.clamp(0, height - 1)[:, :, None],
                                   cols.clamp(0, width - 1)[:, None, :]]  # fmt: skip
    picked = picked * inside.unsqueeze(3).to(x.dtype)
    return picked.permute(0, 3, 1, 2)


def _reflected(index: Tensor, size: int) -> Tensor:
    period = 2 * (size - 1)
    if period == 0:
        return torch.zeros_like(index)
    folded = index.remainder(period)
    return (size - 1) - (folded - (size - 1)).abs()


def _random_shifts(x: Tensor) -> tuple[Tensor, Tensor]:
    height, width = x.shape[-2:]
    limit_y, limit_x = int(height * TRANSLATION_RATIO + 0.5), int(width * TRANSLATION_RATIO + 0.5)
    dy = torch.randint(-limit_y, limit_y + 1, (x.shape[0],), device=x.device)
    dx = torch.randint(-limit_x, limit_x + 1, (x.shape[0],), device=x.device)
    return dy, dx


def _channel_mean(x: Tensor) -> Tensor:
    return x.mean(dim=1, keepdim=True)


class Augment:
    """No augmentation: D sees its inputs as they are (``augment.kind`` 'none')."""

    def __call__(self, x: Tensor) -> Tensor:
        return x

    def observe_real(self, logits: Tensor) -> None:
        """D's raw outputs on the (augmented) reals of a D step."""

    def metrics(self) -> dict[str, Tensor]:
        return {}

    def state_dict(self) -> dict[str, Any] | None:
        return None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        pass


class DiffAugment(Augment):
    def __init__(self, policies: list[str]) -> None:
        order = ("color", "translation", "cutout")  # the paper's order
        self.policies = [p for p in order if p in policies]

    def __call__(self, x: Tensor) -> Tensor:
        out = x
        for policy in self.policies:
            out = getattr(self, f"_{policy}")(out)
        return _like_layout(out, x)

    @staticmethod
    def _color(x: Tensor) -> Tensor:
        batch = x.shape[0]
        rand = lambda: _per_sample(x, torch.rand(batch, device=x.device))  # noqa: E731
        x = x + (rand() - 0.5)  # brightness
        mean = _channel_mean(x)
        x = (x - mean) * (rand() * 2) + mean  # saturation: a no-op on one channel
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * (rand() + 0.5) + mean  # contrast

    @staticmethod
    def _translation(x: Tensor) -> Tensor:
        return translate(x, *_random_shifts(x), reflect=False)

    @staticmethod
    def _cutout(x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        size_y, size_x = int(height * CUTOUT_RATIO + 0.5), int(width * CUTOUT_RATIO + 0.5)
        top = torch.randint(0, height + (1 - size_y % 2), (batch, 1), device=x.device)
        left = torch.randint(0, width + (1 - size_x % 2), (batch, 1), device=x.device)
        rows = torch.arange(height, device=x.device) - top + size_y // 2  # (B, H)
        cols = torch.arange(width, device=x.device) - left + size_x // 2
        cut = ((rows >= 0) & (rows < size_y))[:, :, None] & ((cols >= 0) & (cols < size_x))[:, None]
        return x * (~cut).unsqueeze(1).to(x.dtype)


class AdaptiveAugment(Augment):
    def __init__(
        self, spec: AugmentSpec, *, batch_size: int, boundary: float, device: torch.device
    ) -> None:
        self.target, self.interval, self.boundary = spec.target, spec.interval, boundary
        self.step_size = batch_size * spec.interval / (spec.ada_kimg * 1000)
        # tensors on the device: adapting p never waits for the accelerator
        self.p = torch.zeros((), device=device)
        self.sign_sum = torch.zeros((), device=device)
        self.sign_count = 0

    def __call__(self, x: Tensor) -> Tensor:
        out = self._flip(x)
        out = self._rot90(out)
        out = translate(out, *self._masked(out, *_random_shifts(out)), reflect=True)
        out = self._brightness(out)
        out = self._contrast(out)
        out = self._saturation(out)
        return _like_layout(out, x)

    def _chosen(self, x: Tensor) -> Tensor:
        """Which images of the batch get the transform: each with probability p."""
        return torch.rand(x.shape[0], device=x.device) < self.p

    def _masked(self, x: Tensor, *values: Tensor) -> list[Tensor]:
        chosen = self._chosen(x)
        return [torch.where(chosen, value, torch.zeros_like(value)) for value in values]

    def _flip(self, x: Tensor) -> Tensor:
        return torch.where(self._chosen(x).view(-1, 1, 1, 1), x.flip(-1), x)

    def _rot90(self, x: Tensor) -> Tensor:
        (turns,) = self._masked(x, torch.randint(1, 4, (x.shape[0],), device=x.device))
        turned = torch.stack([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)])
        return turned[turns, torch.arange(x.shape[0], device=x.device)]

    def _brightness(self, x: Tensor) -> Tensor:
        (shift,) = self._masked(x, torch.randn(x.shape[0], device=x.device) * ADA_BRIGHTNESS_STD)
        return x + _per_sample(x, shift)

    def _contrast(self, x: Tensor) -> Tensor:
        (log,) = self._masked(x, torch.randn(x.shape[0], device=x.device) * ADA_CONTRAST_STD)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - mean) * _per_sample(x, log.exp()) + mean

    def _saturation(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:  # grey has no saturation
            return x
        (log,) = self._masked(x, torch.randn(x.shape[0], device=x.device) * ADA_SATURATION_STD)
        mean = _channel_mean(x)
        return (x - mean) * _per_sample(x, log.exp()) + mean

    def observe_real(self, logits: Tensor) -> None:
        self.sign_sum = self.sign_sum + (logits.detach().float() - self.boundary).sign().mean()
        self.sign_count += 1
        if self.sign_count < self.interval:
            return
        r_t = self.sign_sum / self.sign_count
        self.p = (self.p + (r_t - self.target).sign() * self.step_size).clamp(0.0, 1.0)
        self.sign_sum, self.sign_count = torch.zeros_like(self.sign_sum), 0

    def metrics(self) -> dict[str, Tensor]:
        return {"ada_p": self.p}

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p.cpu(), "sign_sum": self.sign_sum.cpu(), "sign_count": self.sign_count}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is None:
            raise CheckpointError("the checkpoint has no ADA state: its run had no augment 'ada'")
        self.p = state["p"].to(self.p.device)
        self.sign_sum = state["sign_sum"].to(self.sign_sum.device)
        self.sign_count = int(state["sign_count"])


def build_augment(spec: Spec, device: torch.device) -> Augment:
    augment = spec.augment
    if augment.kind == "diffaugment":
        return DiffAugment(list(augment.policies))
    if augment.kind == "ada":
        boundary = LOSSES[spec.loss.kind].decision_boundary
        assert boundary is not None, "the spec refuses ada with a critic"
        return AdaptiveAugment(
            augment, batch_size=spec.training.batch_size, boundary=boundary, device=device
        )
    return Augment()
