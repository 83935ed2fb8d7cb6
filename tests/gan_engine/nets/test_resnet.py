import pytest
import torch
from torch import nn

from gan_engine.nets import build_discriminator, build_generator
from gan_engine.nets.resnet import DiscriminatorBlock, GeneratorBlock
from gan_engine.spec import ModelSpec
from tests.gan_engine.conftest import resolved_model


def tiny(**fields: object) -> ModelSpec:
    return resolved_model(
        **{"architecture": "resnet", "latent_dim": 8, "width": 4, "image_size": 8, **fields}
    )


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [8, 32])
def test_shapes_and_tanh_range(channels: int, size: int) -> None:
    model = tiny(image_size=size)
    shape = (channels, size, size)
    generator = build_generator(model, sample_shape=shape, num_classes=0)
    discriminator = build_discriminator(model, sample_shape=shape, num_classes=0)
    images = generator(torch.randn(4, 8) * 10)
    out = discriminator(images)
    assert images.shape == (4, *shape)
    assert images.min() >= -1 and images.max() <= 1
    assert out.logits.shape == (4,)
    assert out.features.shape == (4, 4 * size // 8)  # globally sum-pooled top channels


def test_blocks_double_resolution_in_g_and_halve_it_in_d() -> None:
    model = tiny(image_size=32)
    generator = build_generator(model, sample_shape=(3, 32, 32), num_classes=0)
    discriminator = build_discriminator(model, sample_shape=(3, 32, 32), num_classes=0)
    g_blocks = [m for m in generator.modules() if isinstance(m, GeneratorBlock)]
    d_blocks = [m for m in discriminator.modules() if isinstance(m, DiscriminatorBlock)]
    assert len(g_blocks) == len(d_blocks) == 3
    h = torch.randn(2, 16, 4, 4)
    assert g_blocks[0](h).shape == (2, 8, 8, 8)
    assert d_blocks[0](torch.randn(2, 3, 32, 32)).shape == (2, 4, 16, 16)
    assert [b.first for b in d_blocks] == [True, False, False]


def test_first_d_block_is_never_normalised() -> None:
    discriminator = build_discriminator(
        tiny(image_size=16, d_norm="batch"), sample_shape=(3, 16, 16), num_classes=0
    )
    first, second = (m for m in discriminator.modules() if isinstance(m, DiscriminatorBlock))
    assert isinstance(first.norm1, nn.Identity) and isinstance(first.norm2, nn.Identity)
    assert isinstance(second.norm1, nn.BatchNorm2d)


def test_d_without_norm_has_no_norm_layers() -> None:
    discriminator = build_discriminator(
        tiny(image_size=16, d_norm="none"), sample_shape=(3, 16, 16), num_classes=0
    )
    assert not any(isinstance(m, nn.BatchNorm2d | nn.GroupNorm) for m in discriminator.modules())


def test_d_features_are_a_sum_over_space() -> None:
    discriminator = build_discriminator(tiny(d_norm="none"), sample_shape=(1, 8, 8), num_classes=0)
    x = torch.randn(2, 1, 8, 8)
    maps = torch.relu(discriminator.body.blocks(x))
    assert maps.shape[2:] == (4, 4)
    assert torch.allclose(discriminator(x).features, maps.sum(dim=(2, 3)))
