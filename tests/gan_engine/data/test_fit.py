from __future__ import annotations

import pytest
import torch

from gan_engine.data.fit import fit_images


def _images(*shape: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(1, 256, shape, dtype=torch.uint8, generator=generator)


def test_identity_when_already_fitted() -> None:
    images = _images(2, 1, 16, 16)
    assert fit_images(images, 16) is images


def test_28_to_32_pads_two_on_each_side() -> None:
    images = _images(3, 1, 28, 28)
    fitted = fit_images(images, 32)
    assert fitted.shape == (3, 1, 32, 32) and fitted.dtype == torch.uint8
    assert torch.equal(fitted[:, :, 2:30, 2:30], images)
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert fitted[:, :, border].eq(0).all()


def test_8_to_16_resizes() -> None:
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    images[:, :, :, 4:] = 200
    fitted = fit_images(images, 16)
    assert fitted.shape == (2, 3, 16, 16) and fitted.dtype == torch.uint8
    assert fitted[..., :7].eq(0).all() and fitted[..., 9:].eq(200).all()
    assert fitted[0, 0, 0, 7] == 50 and fitted[0, 0, 0, 8] == 150  # bilinear ramp


def test_downscale_and_non_square_resize() -> None:
    white = torch.full((1, 1, 64, 48), 255, dtype=torch.uint8)
    fitted = fit_images(white, 32)
    assert fitted.shape == (1, 1, 32, 32) and fitted.eq(255).all()


def test_rejects_float_images() -> None:
    with pytest.raises(ValueError, match="uint8"):
        fit_images(torch.zeros(1, 1, 8, 8), 16)
