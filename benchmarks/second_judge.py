"""A second judge of generated class accuracy: an MLP on raw pixels, unlike the evaluator's CNN.

The evaluator (``gan_engine.evaluation.evaluator``) is a strided conv net; a generator that only
fits the features it happens to read would score well there and not here. This judge sees the
flattened image through two hidden layers (no convolution, no pooling), is trained on the real
training split inside the benchmark, seeded, and reports its own accuracy on the real test images,
so its generated accuracy is read against its own reference, as the evaluator's is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_engine.data import Dataset

HIDDEN = (512, 256)
PREDICT_BATCH = 1024


class PixelMLP(nn.Sequential):
    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.2) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        for width in HIDDEN:
            layers += [nn.Linear(in_features, width), nn.ReLU(), nn.Dropout(dropout)]
            in_features = width
        layers.append(nn.Linear(in_features, num_classes))
        super().__init__(*layers)


class PixelJudge:
    """A trained PixelMLP in eval mode; ``predict`` takes images in model space ([-1, 1])."""

    def __init__(self, net: PixelMLP) -> None:
        self.net = net.eval()

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        chunks = images.float().clamp(-1, 1).split(PREDICT_BATCH)
        return torch.cat([self.net(chunk).argmax(1) for chunk in chunks])


def train_pixel_judge(
    dataset: Dataset, *, seed: int = 0, epochs: int = 8, batch_size: int = 128, lr: float = 1e-3
) -> PixelJudge:
    """Adam with a cosine schedule over ``epochs`` of ``dataset`` (labelled images); the same seed
    and data give the same judge. Leaves the global RNG as it found it."""
    if dataset.labels is None or dataset.class_names is None:
        raise ValueError(f"the second judge needs labelled images; {dataset.name} has no labels")
    count = len(dataset.data)
    steps = epochs * math.ceil(count / batch_size)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = PixelMLP(math.prod(dataset.data.shape[1:]), len(dataset.class_names))
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        order = torch.Generator().manual_seed(seed)
        net.train()
        for _ in range(epochs):
            for index in torch.randperm(count, generator=order).split(batch_size):
                images, labels = dataset.batch(index)
                loss = F.cross_entropy(net(images), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    return PixelJudge(net)


def per_class_accuracy(predicted: Tensor, labels: Tensor, num_classes: int) -> list[float]:
    """The fraction of each class's samples predicted as that class."""
    hits = predicted.cpu() == labels.cpu()
    return [hits[labels.cpu() == k].float().mean().item() for k in range(num_classes)]
