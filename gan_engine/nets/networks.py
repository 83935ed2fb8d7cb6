"""G and D as the trainer sees them: an architecture's body wrapped with labels, packing, heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gan_engine.nets.conditioning import LabelConcat, LabelHeads, require_labels
from gan_engine.nets.d_options import MinibatchKind, minibatch_features, pack_samples
from gan_engine.spec import Conditioning


@dataclass
class DOutput:
    logits: torch.Tensor  # (N // pack,) raw scores: no sigmoid anywhere in D
    class_logits: torch.Tensor | None  # (N, num_classes), for conditioning "acgan" only
    features: torch.Tensor  # (N // pack, F) penultimate features, for feature matching


class Generator(nn.Module):
    """forward(z (N, latent_dim), labels (N,) | None) -> samples (N, *sample_shape).

    The label is concatenated to z (``label_input``) or read by the body's conditional BatchNorms
    (``label_norms``: the body is called as ``body(z, labels)``). Labels may also be float class
    weights (N, num_classes), mixing the classes' embeddings (see ``conditioning``).
    """

    def __init__(
        self,
        body: nn.Module,
        *,
        latent_dim: int,
        sample_shape: tuple[int, ...],
        num_classes: int,
        label_input: LabelConcat | None,
        label_norms: bool = False,
    ) -> None:
        super().__init__()
        self.latent_dim, self.sample_shape, self.num_classes = latent_dim, sample_shape, num_classes
        self.label_input, self.label_norms = label_input, label_norms
        self.body = body

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.label_input is not None:
            z = self.label_input(z, require_labels(labels, z.shape[0]))
        if self.label_norms:
            return self.body(z, require_labels(labels, z.shape[0]))
        return self.body(z)


class Discriminator(nn.Module):
    """Labels joined to the input (concat), samples packed, the body's features, then the heads:
    a Linear logit over the features plus batch statistics, and the label heads (projection,
    acgan). ``body`` maps its (packed) input to features (N', num_features)."""

    def __init__(
        self,
        body: nn.Module,
        *,
        num_features: int,
        flatten_input: bool,
        label_input: LabelConcat | None,
        pack: int,
        minibatch: MinibatchKind,
        minibatch_kernels: int,
        conditioning: Conditioning,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.flatten_input, self.label_input, self.pack = flatten_input, label_input, pack
        self.body = body
        self.minibatch = minibatch_features(minibatch, num_features, minibatch_kernels)
        self.head = nn.Linear(num_features + self.minibatch.extra_features, 1)
        self.label_heads = LabelHeads(conditioning, num_classes, num_features)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> DOutput:
        if self.flatten_input:
            x = x.flatten(1)
        if self.label_input is not None:
            x = self.label_input(x, require_labels(labels, x.shape[0]))
        features = self.body(pack_samples(x, self.pack))
        logits = self.head(self.minibatch(features)).squeeze(1)
        logits = logits + self.label_heads.projection_logit(features, labels)
        return DOutput(logits, self.label_heads.class_logits(features), features)
