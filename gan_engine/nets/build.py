"""Build G and D from a ``ModelSpec``: the one place that maps spec fields to network pieces."""

from __future__ import annotations

import math

from torch import nn

from gan_engine.nets.conditioning import LabelConcat, check_num_classes
from gan_engine.nets.d_options import apply_spectral_norm
from gan_engine.nets.dcgan import DCGANDiscriminatorBody, DCGANGenerator, init_dcgan_weights
from gan_engine.nets.mlp import MLPDiscriminatorBody, MLPGenerator
from gan_engine.nets.networks import Discriminator, Generator
from gan_engine.nets.resnet import ResNetDiscriminatorBody, ResNetGenerator
from gan_engine.nets.unet import PatchGANDiscriminator, UNetGenerator
from gan_engine.spec import ModelSpec


def build_generator(
    model: ModelSpec, *, sample_shape: tuple[int, ...], num_classes: int
) -> Generator:
    """G: forward(z (N, latent_dim), labels (N,) int64 | None) -> (N, *sample_shape).

    Images come out through Tanh in [-1, 1]; 2-D points (mlp only) are unbounded. Whatever D's
    conditioning, G takes the label as ``model.g_conditioning`` says: an embedding concatenated to
    z, or class-conditional BatchNorm (dcgan and resnet, whose G has BatchNorm).
    """
    _check(model, sample_shape, num_classes)
    conditional = model.conditioning != "none"
    cbn = conditional and model.g_conditioning == "cbn"
    if cbn and model.architecture == "mlp":
        raise ValueError("model.g_conditioning 'cbn' needs a G with BatchNorm: dcgan or resnet")
    label_input = LabelConcat(num_classes) if conditional and not cbn else None
    in_features = model.latent_dim + (label_input.embedding_dim if label_input else 0)
    norm_classes = num_classes if cbn else 0
    body: nn.Module
    if model.architecture == "mlp":
        body = MLPGenerator(in_features, sample_shape, model.width, model.mlp_layers)
    elif model.architecture == "dcgan":
        body = DCGANGenerator(
            in_features, sample_shape[0], model.image_size, model.width, norm_classes
        )
    else:
        body = ResNetGenerator(
            in_features, sample_shape[0], model.image_size, model.width, norm_classes
        )
    return Generator(
        body,
        latent_dim=model.latent_dim,
        sample_shape=sample_shape,
        num_classes=num_classes,
        label_input=label_input,
        label_norms=cbn,
    )


def build_discriminator(
    model: ModelSpec, *, sample_shape: tuple[int, ...], num_classes: int
) -> Discriminator:
    """D: forward(x (N, *sample_shape), labels (N,) int64 | None) -> DOutput.

    Its logits are raw scores: there is no sigmoid anywhere in D.
    """
    _check(model, sample_shape, num_classes)
    label_input = LabelConcat(num_classes) if model.conditioning == "concat" else None
    label_channels = label_input.embedding_dim if label_input else 0
    d_norm = model.d_norm
    if d_norm == "auto":
        raise ValueError(
            "model.d_norm 'auto' is resolved by the whole spec (it depends on the loss): build "
            "networks from a validated Spec's model"
        )
    body: MLPDiscriminatorBody | DCGANDiscriminatorBody | ResNetDiscriminatorBody
    if model.architecture == "mlp":
        in_features = model.pack * (math.prod(sample_shape) + label_channels)
        body = MLPDiscriminatorBody(in_features, model.width, model.mlp_layers, d_norm)
    elif model.architecture == "dcgan":
        in_channels = model.pack * (sample_shape[0] + label_channels)
        body = DCGANDiscriminatorBody(in_channels, model.image_size, model.width, d_norm)
    else:
        in_channels = model.pack * (sample_shape[0] + label_channels)
        body = ResNetDiscriminatorBody(in_channels, model.image_size, model.width, d_norm)
    discriminator = Discriminator(
        body,
        num_features=body.num_features,
        flatten_input=model.architecture == "mlp",
        label_input=label_input,
        pack=model.pack,
        minibatch=model.minibatch,
        minibatch_kernels=model.minibatch_kernels,
        conditioning=model.conditioning,
        num_classes=num_classes,
    )
    if model.architecture == "dcgan":
        init_dcgan_weights(discriminator)  # the heads too, as the paper's last conv
    if model.spectral_norm:
        apply_spectral_norm(discriminator, skip=(label_input,) if label_input else ())
    return discriminator


def build_translator(
    model: ModelSpec, *, input_shape: tuple[int, ...], sample_shape: tuple[int, ...]
) -> UNetGenerator:
    """Task 'translation''s G: forward(inputs (N, *input_shape)) -> (N, *sample_shape), in
    [-1, 1]."""
    _check_pair(model, input_shape, sample_shape)
    return UNetGenerator(input_shape[0], sample_shape[0], model.image_size or 0, model.width)


def build_patch_discriminator(
    model: ModelSpec, *, input_shape: tuple[int, ...], sample_shape: tuple[int, ...]
) -> PatchGANDiscriminator:
    """Task 'translation''s D: forward(inputs, images) -> patch logits (N, P), no sigmoid."""
    _check_pair(model, input_shape, sample_shape)
    if model.d_norm == "auto":
        raise ValueError("model.d_norm 'auto' is resolved by the whole spec: use a validated Spec")
    discriminator = PatchGANDiscriminator(
        input_shape[0], sample_shape[0], model.image_size or 0, model.width, model.d_norm
    )
    if model.spectral_norm:
        apply_spectral_norm(discriminator)
    return discriminator


def _check_pair(
    model: ModelSpec, input_shape: tuple[int, ...], sample_shape: tuple[int, ...]
) -> None:
    size = (model.image_size, model.image_size)
    if (
        len(input_shape) != 3
        or len(sample_shape) != 3
        or {input_shape[1:], sample_shape[1:]} != {size}
    ):
        raise ValueError(
            f"inputs {input_shape} and targets {sample_shape} must both be (C, S, S) images with "
            f"S = model.image_size {model.image_size}"
        )


def _check(model: ModelSpec, sample_shape: tuple[int, ...], num_classes: int) -> None:
    check_num_classes(model.conditioning, num_classes)
    if model.architecture == "mlp" and len(sample_shape) == 1:
        return
    if len(sample_shape) != 3:
        raise ValueError(
            f"model.architecture '{model.architecture}' needs images (C, H, W), got samples of "
            f"shape {sample_shape}: use architecture 'mlp' for 2-D points"
        )
    if sample_shape[1:] != (model.image_size, model.image_size):
        raise ValueError(
            f"images of shape {sample_shape} do not match model.image_size {model.image_size}"
        )
