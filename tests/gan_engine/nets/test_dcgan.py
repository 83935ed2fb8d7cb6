import pytest
import torch
from torch import nn

from gan_engine.nets import build_discriminator, build_generator
from gan_engine.spec import ModelSpec
from tests.gan_engine.conftest import resolved_model


def tiny(**fields: object) -> ModelSpec:
    return resolved_model(
        **{"architecture": "dcgan", "latent_dim": 8, "width": 4, "image_size": 8, **fields}
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
    top_channels = 4 * size // 8  # width · 2^(k-1) with size = 4 · 2^k
    assert out.features.shape == (4, top_channels * 4 * 4)


def test_generator_layout_follows_radford() -> None:
    generator = build_generator(tiny(image_size=32), sample_shape=(3, 32, 32), num_classes=0)
    convs = [m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d)]
    norms = [m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [c.out_channels for c in convs] == [16, 8, 4, 3]  # 4×4×(width·2^(k-1)), halving
    assert [c.stride for c in convs[1:]] == [(2, 2)] * 3
    assert len(norms) == len(convs) - 1  # BatchNorm on every layer but the last
    assert isinstance(list(generator.modules())[-1], nn.Tanh)


@pytest.mark.parametrize(
    ("d_norm", "norm_type"),
    [("batch", nn.BatchNorm2d), ("layer", nn.GroupNorm), ("auto", nn.BatchNorm2d)],
)
def test_discriminator_normalises_every_layer_but_the_first(d_norm: str, norm_type: type) -> None:
    discriminator = build_discriminator(
        tiny(image_size=32, d_norm=d_norm), sample_shape=(1, 32, 32), num_classes=0
    )
    convs = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2)] * 3
    assert sum(isinstance(m, norm_type) for m in discriminator.modules()) == len(convs) - 1
    acts = [m for m in discriminator.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == len(convs) and all(a.negative_slope == 0.2 for a in acts)


def test_no_normalisation_with_d_norm_none() -> None:
    discriminator = build_discriminator(
        tiny(image_size=32, d_norm="none"), sample_shape=(1, 32, 32), num_classes=0
    )
    norm_types = (nn.BatchNorm2d, nn.GroupNorm)
    assert not any(isinstance(m, norm_types) for m in discriminator.modules())


def test_weights_initialised_as_radford() -> None:
    model = tiny(image_size=32, width=8)
    shape = (3, 32, 32)
    nets = [
        build_generator(model, sample_shape=shape, num_classes=0),
        build_discriminator(model, sample_shape=shape, num_classes=0),
    ]
    weights = torch.cat(
        [
            m.weight.flatten()
            for net in nets
            for m in net.modules()
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)
        ]
    )
    assert weights.mean().abs() < 0.002
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    norms = [m for net in nets for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    gammas = torch.cat([m.weight for m in norms])
    assert gammas.mean().item() == pytest.approx(1.0, abs=0.01)
    assert gammas.std().item() == pytest.approx(0.02, rel=0.3)
    assert all(m.bias.abs().max() == 0 for m in norms)


def test_layer_norm_keeps_samples_independent() -> None:
    discriminator = build_discriminator(tiny(d_norm="layer"), sample_shape=(1, 8, 8), num_classes=0)
    x = torch.randn(4, 1, 8, 8)
    changed = x.clone()
    changed[1:] = torch.randn(3, 1, 8, 8)
    assert torch.allclose(discriminator(x).logits[0], discriminator(changed).logits[0])


def test_rejects_points_and_mismatched_sizes() -> None:
    with pytest.raises(ValueError, match="mlp"):
        build_generator(tiny(), sample_shape=(2,), num_classes=0)
    with pytest.raises(ValueError, match="image_size"):
        build_discriminator(tiny(image_size=16), sample_shape=(1, 8, 8), num_classes=0)
