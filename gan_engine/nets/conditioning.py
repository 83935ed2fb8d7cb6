"""Class conditioning: where the label enters G and D.

- ``concat`` (Mirza & Osindero 2014, the seeds' cGAN): a learned label embedding is concatenated
  to z in G and to D's input, as extra features (points, flattened images) or constant channel maps
  (images).
- ``projection`` (Miyato & Koyama 2018): D's logit gains ``<embed(y), features>``. G takes the
  label as in ``concat`` (a concatenated embedding, not conditional BatchNorm), so every
  architecture shares one generator-side piece.
- ``acgan`` (Odena et al. 2017): D gets an auxiliary head that classifies its input; G takes the
  label as in ``concat``.
"""

from __future__ import annotations

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
    if labels.shape != (batch_size,):
        raise ValueError(f"labels must have shape ({batch_size},), got {tuple(labels.shape)}")
    return labels


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
        code = self.embedding(labels).to(x.dtype)
        code = code.view(*code.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
        return torch.cat([x, code], dim=1)


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
