import pytest
import torch
from torch import nn

from gan_engine.nets import build_discriminator, build_generator
from gan_engine.nets.conditioning import ConditionalBatchNorm2d
from gan_engine.spec import ModelSpec, SpecError, parse_spec
from tests.gan_engine.conftest import resolved_model

ARCHITECTURES = ["mlp", "dcgan", "resnet"]
CONDITIONINGS = ["none", "concat", "projection", "acgan"]
CLASSES = 3


def tiny(**fields: object) -> ModelSpec:
    return resolved_model(
        **{"latent_dim": 8, "width": 4, "image_size": 8, "mlp_layers": 2, **fields}
    )


def labels_for(conditioning: str, n: int) -> torch.Tensor | None:
    return None if conditioning == "none" else torch.arange(n) % CLASSES


def classes_for(conditioning: str) -> int:
    return 0 if conditioning == "none" else CLASSES


@pytest.mark.parametrize("size", [8, 32])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("conditioning", CONDITIONINGS)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_output_shapes(architecture: str, conditioning: str, channels: int, size: int) -> None:
    model = tiny(architecture=architecture, conditioning=conditioning, image_size=size)
    shape = (channels, size, size)
    num_classes = classes_for(conditioning)
    generator = build_generator(model, sample_shape=shape, num_classes=num_classes)
    discriminator = build_discriminator(model, sample_shape=shape, num_classes=num_classes)
    labels = labels_for(conditioning, 4)
    images = generator(torch.randn(4, 8), labels)
    out = discriminator(images, labels)
    assert images.shape == (4, *shape)
    assert images.min() >= -1 and images.max() <= 1
    assert out.logits.shape == (4,)
    assert out.features.dim() == 2 and out.features.shape[0] == 4
    if conditioning == "acgan":
        assert out.class_logits is not None and out.class_logits.shape == (4, CLASSES)
    else:
        assert out.class_logits is None


@pytest.mark.parametrize("conditioning", CONDITIONINGS[1:])
def test_points_are_conditioned_too(conditioning: str) -> None:
    model = tiny(architecture="mlp", conditioning=conditioning)
    generator = build_generator(model, sample_shape=(2,), num_classes=CLASSES)
    discriminator = build_discriminator(model, sample_shape=(2,), num_classes=CLASSES)
    labels = labels_for(conditioning, 6)
    out = discriminator(generator(torch.randn(6, 8), labels), labels)
    assert out.logits.shape == (6,)


@pytest.mark.parametrize("conditioning", CONDITIONINGS[1:])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_generator_depends_on_the_label(architecture: str, conditioning: str) -> None:
    model = tiny(architecture=architecture, conditioning=conditioning)
    generator = build_generator(model, sample_shape=(1, 8, 8), num_classes=CLASSES).eval()
    z = torch.randn(1, 8).expand(CLASSES, 8)
    images = generator(z, torch.arange(CLASSES))
    for a in range(CLASSES):
        for b in range(a + 1, CLASSES):
            assert not torch.allclose(images[a], images[b])


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_projection_logit_depends_on_the_label(architecture: str) -> None:
    model = tiny(architecture=architecture, conditioning="projection", d_norm="none")
    discriminator = build_discriminator(model, sample_shape=(1, 8, 8), num_classes=CLASSES)
    x = torch.randn(1, 1, 8, 8).expand(CLASSES, 1, 8, 8)
    out = discriminator(x, torch.arange(CLASSES))
    assert torch.allclose(out.features[0], out.features[1])
    assert out.logits.unique().numel() == CLASSES
    projected = (discriminator.label_heads.projection.weight * out.features).sum(dim=1)
    assert torch.allclose(out.logits - projected, out.logits[0] - projected[0], atol=1e-5)


@pytest.mark.parametrize("architecture", ["dcgan", "resnet"])
def test_concat_adds_label_maps_to_d_input(architecture: str) -> None:
    model = tiny(architecture=architecture, conditioning="concat")
    discriminator = build_discriminator(model, sample_shape=(3, 8, 8), num_classes=CLASSES)
    first_conv = next(m for m in discriminator.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 3 + CLASSES
    joined = discriminator.label_input(torch.zeros(2, 3, 8, 8), torch.tensor([0, 1]))
    code = discriminator.label_input.embedding.weight
    assert torch.equal(joined[1, 3:], code[1][:, None, None].expand(CLASSES, 8, 8))


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_gradients_reach_every_parameter(architecture: str, conditioning: str) -> None:
    model = tiny(architecture=architecture, conditioning=conditioning)
    num_classes = classes_for(conditioning)
    generator = build_generator(model, sample_shape=(3, 8, 8), num_classes=num_classes)
    discriminator = build_discriminator(model, sample_shape=(3, 8, 8), num_classes=num_classes)
    labels = labels_for(conditioning, 4)
    out = discriminator(generator(torch.randn(4, 8), labels), labels)
    total = out.logits.sum() + out.features.sum()
    if out.class_logits is not None:
        total = total + out.class_logits.sum()
    total.backward()
    for net in (generator, discriminator):
        missing = [name for name, p in net.named_parameters() if p.grad is None]
        assert not missing


@pytest.mark.parametrize("conditioning", CONDITIONINGS[1:])
def test_conditioning_needs_two_classes(conditioning: str) -> None:
    model = tiny(conditioning=conditioning)
    for build in (build_generator, build_discriminator):
        with pytest.raises(ValueError, match="at least 2 classes"):
            build(model, sample_shape=(1, 8, 8), num_classes=1)


def test_conditional_nets_require_labels() -> None:
    model = tiny(conditioning="projection")
    generator = build_generator(model, sample_shape=(1, 8, 8), num_classes=CLASSES)
    discriminator = build_discriminator(model, sample_shape=(1, 8, 8), num_classes=CLASSES)
    with pytest.raises(ValueError, match="labels"):
        generator(torch.randn(2, 8), None)
    with pytest.raises(ValueError, match="labels"):
        discriminator(torch.randn(2, 1, 8, 8), None)


CONV_ARCHITECTURES = ["dcgan", "resnet"]


@pytest.mark.parametrize("conditioning", CONDITIONINGS[1:])
@pytest.mark.parametrize("architecture", CONV_ARCHITECTURES)
def test_cbn_generator_works_with_every_d_conditioning(
    architecture: str, conditioning: str
) -> None:
    model = tiny(architecture=architecture, conditioning=conditioning, g_conditioning="cbn")
    generator = build_generator(model, sample_shape=(3, 8, 8), num_classes=CLASSES)
    discriminator = build_discriminator(model, sample_shape=(3, 8, 8), num_classes=CLASSES)
    assert generator.label_input is None  # z enters alone
    norms = [m for m in generator.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert norms and not any(
        isinstance(m, nn.BatchNorm2d) and m.affine for m in generator.modules()
    )
    labels = labels_for(conditioning, 4)
    out = discriminator(generator(torch.randn(4, 8), labels), labels)
    total = out.logits.sum() + out.features.sum()
    if out.class_logits is not None:
        total = total + out.class_logits.sum()
    total.backward()
    missing = [name for name, p in generator.named_parameters() if p.grad is None]
    assert not missing
    # every class's row of every gain and bias table got a gradient from the labels it saw
    for norm in norms:
        assert norm.gain.weight.grad is not None
        assert (norm.gain.weight.grad.abs().sum(dim=1) > 0).all()


@pytest.mark.parametrize("architecture", CONV_ARCHITECTURES)
def test_cbn_gains_and_biases_are_the_classes_own(architecture: str) -> None:
    model = tiny(architecture=architecture, conditioning="projection", g_conditioning="cbn")
    generator = build_generator(model, sample_shape=(1, 8, 8), num_classes=CLASSES).eval()
    z = torch.randn(1, 8).expand(CLASSES, 8)
    labels = torch.arange(CLASSES)
    # at initialisation every class has gain 1 and bias 0: cBN is a plain BatchNorm
    images = generator(z, labels)
    assert torch.allclose(images[0], images[1]) and torch.allclose(images[1], images[2])
    first = next(m for m in generator.modules() if isinstance(m, ConditionalBatchNorm2d))
    with torch.no_grad():
        first.bias.weight[1] += 1.0
    moved = generator(z, labels)
    assert torch.equal(moved[0], images[0]) and torch.equal(moved[2], images[2])
    assert not torch.allclose(moved[1], images[1])


def test_cbn_class_weights_mix_the_embeddings() -> None:
    model = tiny(architecture="resnet", conditioning="concat", g_conditioning="cbn")
    generator = build_generator(model, sample_shape=(1, 8, 8), num_classes=CLASSES).eval()
    for norm in generator.modules():
        if isinstance(norm, ConditionalBatchNorm2d):
            nn.init.normal_(norm.gain.weight)
            nn.init.normal_(norm.bias.weight)
    z = torch.randn(2, 8)
    labels = torch.tensor([2, 0])
    one_hot = nn.functional.one_hot(labels, CLASSES).float()
    assert torch.equal(generator(z, one_hot), generator(z, labels))
    norm = next(m for m in generator.modules() if isinstance(m, ConditionalBatchNorm2d))
    half = torch.tensor([[0.5, 0.5, 0.0]])
    x = torch.randn(1, norm.norm.num_features, 4, 4)
    mixed = norm(x, half)
    expected = (
        norm.norm(x) * (0.5 * (norm.gain.weight[0] + norm.gain.weight[1]))[:, None, None]
        + (0.5 * (norm.bias.weight[0] + norm.bias.weight[1]))[:, None, None]
    )
    assert torch.allclose(mixed, expected, atol=1e-6)


def test_cbn_generator_requires_labels() -> None:
    model = tiny(architecture="dcgan", conditioning="projection", g_conditioning="cbn")
    generator = build_generator(model, sample_shape=(1, 8, 8), num_classes=CLASSES)
    with pytest.raises(ValueError, match="labels"):
        generator(torch.randn(2, 8), None)


@pytest.mark.parametrize(
    "fields",
    [
        {"dataset": {"builtin": "digits"}, "model": {"g_conditioning": "cbn"}},
        {
            "dataset": {"builtin": "ring8"},
            "model": {"architecture": "mlp", "conditioning": "concat", "g_conditioning": "cbn"},
        },
        {
            "task": "translation",
            "dataset": {"builtin": "edges2fashion"},
            "model": {"g_conditioning": "cbn"},
        },
    ],
    ids=["unconditional", "mlp", "translation"],
)
def test_cbn_where_it_cannot_apply_names_the_field(fields: dict[str, object]) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(fields)
    assert caught.value.param == "model.g_conditioning"
