"""Class conditioning: where the label enters G and D.

D's side (``model.conditioning``):

- ``concat`` (Mirza & Osindero 2014, the seeds' cGAN): a learned label embedding is concatenated
  to D's input, as extra features (points, flattened images) or constant channel maps (images).
- ``projection`` (Miyato & Koyama 2018): D's logit gains ``<embed(y), features>``.
- ``acgan`` (Odena et al. 2017): D gets an auxiliary head that classifies its input.

G's side (``model.g_conditioning``), with any of the above:

- ``concat``: a learned label embedding concatenated to z (``LabelConcat``).
- ``cbn``: class-conditional BatchNorm (de Vries et al. 2017; SNGAN's and BigGAN's projection
  generators): every BatchNorm of G normalises without its own affine and takes its gain and bias
  per class from an embedding (``ConditionalBatchNorm2d``); z enters alone.

Labels are int64 class indices (N,), or float class weights (N, num_classes) whose rows mix the
classes' embeddings (a class walk): index k and the one-hot row of k give the same embedding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gan_engine.spec import Conditioning


def check_num_classes(conditioning: Conditioning, num_classes: int) -> None:
    if conditioning != "none" and num_classes < 2:
        raise ValueError(
            f"model.conditioning '{conditioning}' needs a labelled dataset with at least 2 classes "
            f"(got {num_classes}); use conditioning 'none' or a dataset with labels"
        )


def require_labels(labels: torch.Tensor | None, batch_size: int) -> torch.Tensor:
    if labels is None:
        raise ValueError("this network is class-conditional: pass labels, int64 of shape (N,)")
    if labels.shape != (batch_size,) and not (labels.is_floating_point() and labels.dim() == 2):
        raise ValueError(f"labels must have shape ({batch_size},), got {tuple(labels.shape)}")
    if labels.shape[0] != batch_size:
        raise ValueError(f"labels must have {batch_size} rows, got {labels.shape[0]}")
    return labels


def embed(embedding: nn.Embedding, labels: torch.Tensor) -> torch.Tensor:
    """The rows of ``embedding`` for class indices (N,), or their mix for class weights (N, K)."""
    if not labels.is_floating_point():
        return embedding(labels)
    # an elementwise sum, not a matmul: autocast would round the table to bf16
    return (labels.to(embedding.weight.dtype)[:, :, None] * embedding.weight).sum(dim=1)


class LabelConcat(nn.Module):
    """Concatenates a label embedding along dim 1, broadcast over any spatial dims of ``x``.

    On z (N, L) it gives (N, L + E); on images (N, C, H, W) it gives (N, C + E, H, W).
    """

    def __init__(self, num_classes: int, embedding_dim: int | None = None) -> None:
        super().__init__()
        # as wide as a one-hot code by default, so it can express anything one-hot could
        self.embedding_dim = embedding_dim or num_classes
        self.embedding = nn.Embedding(num_classes, self.embedding_dim)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        code = embed(self.embedding, labels).to(x.dtype)
        code = code.view(*code.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
        return torch.cat([x, code], dim=1)


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm2d without affine, then ``gain(y) * x + bias(y)`` per class; forward(x, labels).

    The gains start at 1 and the biases at 0, i.e. as a plain BatchNorm for every class.
    """

    def __init__(self, num_channels: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_channels, affine=False)
        self.gain, self.bias = (
            nn.Embedding(num_classes, num_channels),
            nn.Embedding(num_classes, num_channels),
        )
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gain, bias = embed(self.gain, labels), embed(self.bias, labels)
        return self.norm(x) * gain[:, :, None, None].to(x.dtype) + bias[:, :, None, None].to(
            x.dtype
        )


def generator_norm(num_classes: int) -> Callable[[int], nn.Module]:
    """G's BatchNorm for ``num_channels``: class-conditional with classes, plain without."""
    if num_classes:
        return lambda channels: ConditionalBatchNorm2d(channels, num_classes)
    return nn.BatchNorm2d


def call_with_labels(
    layer: nn.Module, x: torch.Tensor, labels: torch.Tensor | None
) -> torch.Tensor:
    """``layer(x)``, or ``layer(x, labels)`` for a conditional BatchNorm."""
    if isinstance(layer, ConditionalBatchNorm2d):
        return layer(x, require_labels(labels, x.shape[0]))
    return layer(x)


class LabelHeads(nn.Module):
    """The label-aware part of D's output, read from its penultimate features (N, F)."""

    def __init__(self, conditioning: Conditioning, num_classes: int, num_features: int) -> None:
        super().__init__()
        self.projection = (
            nn.Embedding(num_classes, num_features) if conditioning == "projection" else None
        )
        self.classifier = nn.Linear(num_features, num_classes) if conditioning == "acgan" else None
        if self.projection is not None:
            nn.init.xavier_uniform_(self.projection.weight)

    def projection_logit(self, features: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """``<embed(y), features>`` per sample, or 0 without projection conditioning."""
        if self.projection is None:
            return features.new_zeros(features.shape[0])
        labels = require_labels(labels, features.shape[0])
        return (self.projection(labels).to(features.dtype) * features).sum(dim=1)

    def class_logits(self, features: torch.Tensor) -> torch.Tensor | None:
        return None if self.classifier is None else self.classifier(features)
