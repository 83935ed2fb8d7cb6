import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from gan_engine.nets import build_discriminator
from gan_engine.nets.d_options import MinibatchDiscrimination, MinibatchStddev, pack_samples
from gan_engine.spec import ModelSpec
from tests.gan_engine.conftest import resolved_model

ARCHITECTURES = ["mlp", "dcgan", "resnet"]


def tiny(**fields: object) -> ModelSpec:
    return resolved_model(
        **{"latent_dim": 8, "width": 4, "image_size": 8, "mlp_layers": 2, **fields}
    )


@pytest.mark.parametrize("pack", [1, 2, 3, 4])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_packed_d_gives_one_logit_per_group(architecture: str, pack: int) -> None:
    model = tiny(architecture=architecture, pack=pack)
    discriminator = build_discriminator(model, sample_shape=(3, 8, 8), num_classes=0)
    out = discriminator(torch.randn(12, 3, 8, 8))
    assert out.logits.shape == (12 // pack,)
    assert out.features.shape[0] == 12 // pack


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_packing_with_concat_labels(architecture: str) -> None:
    model = tiny(architecture=architecture, pack=2, conditioning="concat")
    discriminator = build_discriminator(model, sample_shape=(1, 8, 8), num_classes=3)
    out = discriminator(torch.randn(6, 1, 8, 8), torch.arange(6) % 3)
    assert out.logits.shape == (3,)
    first = next(m for m in discriminator.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    if architecture == "mlp":  # each flattened sample with its label features, then packed
        assert isinstance(first, nn.Linear) and first.in_features == 2 * (1 * 8 * 8 + 3)
    else:  # each sample with its label maps, then packed along channels
        assert isinstance(first, nn.Conv2d) and first.in_channels == 2 * (1 + 3)


def test_pack_points_and_images_concatenates_consecutive_samples() -> None:
    images = torch.randn(4, 3, 2, 2)
    packed = pack_samples(images, 2)
    assert packed.shape == (2, 6, 2, 2)
    assert torch.equal(packed[1], torch.cat([images[2], images[3]]))
    points = torch.randn(6, 2)
    assert torch.equal(pack_samples(points, 3)[1], torch.cat([points[3], points[4], points[5]]))
    with pytest.raises(ValueError, match="divisible"):
        pack_samples(points, 4)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_spectral_norm_on_every_conv_and_linear(architecture: str) -> None:
    model = tiny(
        architecture=architecture,
        spectral_norm=True,
        conditioning="projection",
        minibatch="discrimination",
    )
    discriminator = build_discriminator(model, sample_shape=(1, 8, 8), num_classes=3)
    layers = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert layers
    assert all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert parametrize.is_parametrized(discriminator.label_heads.projection, "weight")


def test_label_input_embedding_is_not_spectral_normalised() -> None:
    model = tiny(spectral_norm=True, conditioning="concat")
    discriminator = build_discriminator(model, sample_shape=(1, 8, 8), num_classes=3)
    assert not parametrize.is_parametrized(discriminator.label_input.embedding, "weight")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_spectral_norm_bounds_largest_singular_value(architecture: str) -> None:
    model = tiny(architecture=architecture, spectral_norm=True, width=8, d_norm="none")
    discriminator = build_discriminator(model, sample_shape=(1, 8, 8), num_classes=0)
    for _ in range(5):  # each training-mode forward runs one power iteration
        discriminator(torch.randn(4, 1, 8, 8))
    discriminator.eval()
    layers = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    for layer in layers:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("minibatch", ["discrimination", "stddev"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_minibatch_features_make_d_see_the_rest_of_the_batch(
    architecture: str, minibatch: str
) -> None:
    def logit_of_first_after_changing_second(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        model = tiny(architecture=architecture, minibatch=kind, d_norm="none")
        discriminator = build_discriminator(model, sample_shape=(1, 8, 8), num_classes=0)
        x = torch.randn(4, 1, 8, 8)
        changed = x.clone()
        changed[1] = torch.randn(1, 8, 8) * 3
        return discriminator(x).logits[0], discriminator(changed).logits[0]

    same_batch, other_batch = logit_of_first_after_changing_second("none")
    assert torch.allclose(same_batch, other_batch)
    same_batch, other_batch = logit_of_first_after_changing_second(minibatch)
    assert not torch.allclose(same_batch, other_batch)


def test_minibatch_discrimination_matches_salimans() -> None:
    layer = MinibatchDiscrimination(in_features=3, num_kernels=2, kernel_dim=4)
    features = torch.randn(5, 3)
    m = (features @ layer.T.weight.T).view(5, 2, 4)
    expected = torch.zeros(5, 2)
    for i in range(5):
        for j in range(5):
            if i != j:
                expected[i] += torch.exp(-(m[i] - m[j]).abs().sum(dim=1))
    out = layer(features)
    assert out.shape == (5, 3 + 2)
    assert torch.allclose(out[:, :3], features)
    assert torch.allclose(out[:, 3:], expected, atol=1e-6)


def test_minibatch_kernels_set_the_extra_features() -> None:
    model = tiny(architecture="mlp", minibatch="discrimination", minibatch_kernels=7)
    discriminator = build_discriminator(model, sample_shape=(2,), num_classes=0)
    assert discriminator.minibatch.extra_features == 7
    assert discriminator.head.in_features == model.width + 7


def test_minibatch_stddev_appends_mean_std() -> None:
    features = torch.tensor([[0.0, 1.0], [2.0, 5.0]])
    out = MinibatchStddev()(features)
    assert out.shape == (2, 3)
    assert torch.allclose(out[:, 2], torch.tensor([1.5, 1.5]))  # mean of stds 1 and 2


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_no_sigmoid_in_d(architecture: str) -> None:
    discriminator = build_discriminator(
        tiny(architecture=architecture), sample_shape=(1, 8, 8), num_classes=0
    )
    assert not any(isinstance(m, nn.Sigmoid) for m in discriminator.modules())
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        discriminator.head.weight.zero_()
        discriminator.head.bias.fill_(5.0)
        assert discriminator(x).logits.min() > 1
        discriminator.head.bias.fill_(-5.0)
        assert discriminator(x).logits.max() < 0


@pytest.mark.parametrize("minibatch", ["discrimination", "stddev"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_gradients_reach_every_parameter_with_all_options(
    architecture: str, minibatch: str
) -> None:
    model = tiny(
        architecture=architecture,
        spectral_norm=True,
        minibatch=minibatch,
        pack=2,
        conditioning="concat",
        d_norm="layer",
    )
    discriminator = build_discriminator(model, sample_shape=(3, 8, 8), num_classes=3)
    out = discriminator(torch.randn(8, 3, 8, 8), torch.arange(8) % 3)
    (out.logits.sum() + out.features.sum()).backward()
    missing = [name for name, p in discriminator.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("minibatch", ["none", "discrimination", "stddev"])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_double_backward_for_gradient_penalties(architecture: str, minibatch: str) -> None:
    model = tiny(
        architecture=architecture,
        minibatch=minibatch,
        spectral_norm=True,
        d_norm="layer",
        conditioning="projection",
    )
    discriminator = build_discriminator(model, sample_shape=(1, 8, 8), num_classes=3)
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    logits = discriminator(x, torch.arange(4) % 3).logits
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    grad.square().sum().backward()  # biases of the last layers get none: the penalty ignores them
    assert all(p.grad is not None for p in discriminator.body.parameters() if p.dim() > 1)
