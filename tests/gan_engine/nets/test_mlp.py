import pytest
import torch
from torch import nn

from gan_engine.nets import build_discriminator, build_generator
from gan_engine.spec import ModelSpec
from tests.gan_engine.conftest import resolved_model


def tiny(**fields: object) -> ModelSpec:
    return resolved_model(**{"architecture": "mlp", "latent_dim": 4, "width": 8, **fields})


def test_points_have_linear_output_and_logit_per_sample() -> None:
    model = tiny(mlp_layers=2)
    generator = build_generator(model, sample_shape=(2,), num_classes=0)
    discriminator = build_discriminator(model, sample_shape=(2,), num_classes=0)
    with torch.no_grad():
        generator.body.net[-1].weight.mul_(100)
    points = generator(torch.randn(8, 4))
    out = discriminator(points)
    assert points.shape == (8, 2)
    assert points.abs().max() > 1  # no Tanh on points
    assert out.logits.shape == (8,)
    assert out.features.shape == (8, 8)
    assert out.class_logits is None


@pytest.mark.parametrize("layers", [1, 3])
def test_hidden_layers_and_activations(layers: int) -> None:
    model = tiny(mlp_layers=layers)
    generator = build_generator(model, sample_shape=(2,), num_classes=0)
    discriminator = build_discriminator(model, sample_shape=(2,), num_classes=0)
    g_linears = [m for m in generator.modules() if isinstance(m, nn.Linear)]
    assert len(g_linears) == layers + 1
    assert all(lin.out_features == 8 for lin in g_linears[:-1])
    assert sum(isinstance(m, nn.ReLU) for m in generator.modules()) == layers
    d_acts = [m for m in discriminator.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(d_acts) == layers
    assert all(act.negative_slope == 0.2 for act in d_acts)


@pytest.mark.parametrize("sample_shape", [(1, 8, 8), (3, 8, 8), (1, 12, 12)])
def test_small_images_flattened(sample_shape: tuple[int, ...]) -> None:
    model = tiny(image_size=sample_shape[-1])
    generator = build_generator(model, sample_shape=sample_shape, num_classes=0)
    discriminator = build_discriminator(model, sample_shape=sample_shape, num_classes=0)
    images = generator(torch.randn(4, 4))
    assert images.shape == (4, *sample_shape)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images).logits.shape == (4,)


@pytest.mark.parametrize(
    ("d_norm", "norm_type"),
    [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm)],
)
def test_d_norm_on_every_hidden_layer_but_the_first(d_norm: str, norm_type: type) -> None:
    discriminator = build_discriminator(
        tiny(mlp_layers=3, d_norm=d_norm), sample_shape=(2,), num_classes=0
    )
    assert sum(isinstance(m, norm_type) for m in discriminator.modules()) == 2


def test_builders_refuse_an_unresolved_d_norm() -> None:
    """'auto' is resolved by the whole spec (it depends on the loss); a bare ModelSpec that still
    holds it is not built with a guess."""
    unresolved = ModelSpec.model_validate({"architecture": "mlp", "latent_dim": 4, "width": 8})
    assert unresolved.d_norm == "auto"
    with pytest.raises(ValueError, match="validated Spec"):
        build_discriminator(unresolved, sample_shape=(2,), num_classes=0)
