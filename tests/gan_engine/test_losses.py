import math

import pytest
import torch

from gan_engine.losses import LOSSES

LOGITS = torch.tensor([-2.0, 0.0, 3.0])


def test_every_spec_loss_has_a_pair() -> None:
    from typing import get_args

    from gan_engine.spec import LossKind

    assert set(LOSSES) == set(get_args(LossKind))


def test_minimax_is_the_saturating_log_one_minus_d() -> None:
    d = torch.sigmoid(LOGITS)
    expected = torch.log(1 - d).mean()
    assert torch.allclose(LOSSES["minimax"].generator(LOGITS), expected)


def test_non_saturating_is_minus_log_d() -> None:
    expected = -torch.log(torch.sigmoid(LOGITS)).mean()
    assert torch.allclose(LOSSES["non_saturating"].generator(LOGITS), expected)


def test_minimax_saturates_where_non_saturating_does_not() -> None:
    fake = torch.tensor([-8.0], requires_grad=True)  # D confidently calls the fake fake
    (grad_minimax,) = torch.autograd.grad(LOSSES["minimax"].generator(fake), fake)
    (grad_ns,) = torch.autograd.grad(LOSSES["non_saturating"].generator(fake), fake)
    assert abs(grad_minimax.item()) < 1e-3 < abs(grad_ns.item())


def test_bce_discriminator_with_one_sided_smoothing() -> None:
    real, fake = torch.tensor([1.0]), torch.tensor([-1.0])
    t = 0.9
    d_real, d_fake = torch.sigmoid(real), torch.sigmoid(fake)
    expected = -(t * torch.log(d_real) + (1 - t) * torch.log(1 - d_real)) - torch.log(1 - d_fake)
    assert torch.allclose(LOSSES["non_saturating"].discriminator(real, fake, t), expected)


def test_wasserstein_hinge_least_squares_values() -> None:
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-0.5, 1.5])
    assert LOSSES["wasserstein"].discriminator(real, fake, 1.0).item() == pytest.approx(0.5 - 1.25)
    assert LOSSES["wasserstein"].generator(fake).item() == pytest.approx(-0.5)
    hinge = (0 + 0.5) / 2 + (0.5 + 2.5) / 2
    assert LOSSES["hinge"].discriminator(real, fake, 1.0).item() == pytest.approx(hinge)
    lsq = 0.5 * ((1.0**2 + 0.5**2) / 2) + 0.5 * ((0.25 + 2.25) / 2)
    assert LOSSES["least_squares"].discriminator(real, fake, 1.0).item() == pytest.approx(lsq)
    assert LOSSES["least_squares"].generator(fake).item() == pytest.approx(
        0.5 * ((1.5**2 + 0.5**2) / 2)
    )


def test_losses_are_finite_for_extreme_logits() -> None:
    extreme = torch.tensor([-1e4, 1e4])
    for pair in LOSSES.values():
        assert math.isfinite(pair.discriminator(extreme, extreme, 1.0).item())
        assert math.isfinite(pair.generator(extreme).item())
