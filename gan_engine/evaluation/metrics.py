"""Sample-quality and coverage metrics in the evaluator's feature space.

FID comes from torchmetrics (fed the evaluator as its feature extractor). torchmetrics has no
improved precision/recall (Kynkäänniemi et al. 2019), so it is written here, as are the class and
diversity measures used to tell mode collapse from under-training.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance

from gan_engine.evaluation.evaluator import Evaluator

ROW_CHUNK = 256  # rows of a distance matrix held at once
MAX_PAIRWISE = 2000  # samples per group for mean pairwise distances
KL_FLOOR = 1e-6


class EvaluatorFeatures(nn.Module):
    """The evaluator's penultimate layer as a torchmetrics feature extractor.

    Takes float images in model space ([-1, 1]); returns float64 CPU features, where torchmetrics
    keeps its running sums. The evaluator is held as a plain attribute (it is not an nn.Module),
    so moving the metric moves no weights.
    """

    def __init__(self, evaluator: Evaluator) -> None:
        super().__init__()
        self.evaluator = evaluator
        self.num_features = evaluator.num_features

    def forward(self, images: Tensor) -> Tensor:
        return self.evaluator.features(images).to("cpu", torch.float64)


def fid_metric(evaluator: Evaluator) -> FrechetInceptionDistance:
    """torchmetrics' FID over the evaluator's features; ``reset()`` keeps the real statistics.

    With a custom extractor torchmetrics passes images through untouched (``normalize`` only
    picks the dtype of its probe image, and the probe is skipped when ``num_features`` is set), so
    update it with float images in [-1, 1].
    """
    return FrechetInceptionDistance(
        feature=EvaluatorFeatures(evaluator), normalize=True, reset_real_features=False
    )


def fid(evaluator: Evaluator, real: Tensor, fake: Tensor) -> float:
    """FID between two image sets (float, [-1, 1], (N, C, H, W)) in the evaluator's features."""
    metric = fid_metric(evaluator)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def class_accuracy(predicted: Tensor, labels: Tensor) -> float:
    """Share of samples the evaluator assigns to the class they were generated for."""
    return (predicted.cpu() == labels.cpu()).float().mean().item()


def lowest_class_accuracy(predicted: Tensor, labels: Tensor) -> float:
    """``class_accuracy`` of the class the evaluator recognises least among the samples asked
    for it: one class collapsing into another, which the mean over classes hides."""
    predicted, labels = predicted.cpu(), labels.cpu()
    asked = torch.bincount(labels)
    hits = torch.bincount(labels[predicted == labels], minlength=len(asked))
    return (hits[asked > 0] / asked[asked > 0]).min().item()


def class_histogram(classes: Tensor, num_classes: int) -> Tensor:
    """Class shares (float64, sums to 1) of a tensor of class indices."""
    counts = torch.bincount(classes.cpu(), minlength=num_classes).double()
    return counts / counts.sum().clamp_min(1)


def class_coverage(histogram: Tensor, reference: Tensor, min_share: float = 0.1) -> float:
    """Share of the reference's classes that get at least ``min_share`` of their reference share
    (10 balanced classes: a class is covered from 1 % of the samples on)."""
    present = reference > 0
    covered = histogram[present] >= min_share * reference[present]
    return covered.double().mean().item()


def kl_divergence(p: Tensor, q: Tensor) -> float:
    """KL(p || q) = sum p log(p / q) in nats. Zero-count convention: classes where p is 0 add
    nothing (0 log 0 = 0); q is floored at 1e-6 so a class missing from q gives a large, finite
    value instead of infinity."""
    p, q = p.double(), q.double().clamp_min(KL_FLOOR)
    q = q / q.sum()
    mask = p > 0
    return (p[mask] * (p[mask] / q[mask]).log()).sum().item()


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Each set's manifold is the union of balls around its points reaching their k-th nearest
    neighbour within the set. Precision: share of fake points inside the real manifold; recall:
    share of real points inside the fake manifold. Pass sets of equal size: radii shrink as a
    set grows.
    """
    real, fake = real.float(), fake.float()
    precision = _inside_manifold(fake, real, kth_neighbour_distance(real, k)).double().mean()
    recall = _inside_manifold(real, fake, kth_neighbour_distance(fake, k)).double().mean()
    return precision.item(), recall.item()


def kth_neighbour_distance(x: Tensor, k: int) -> Tensor:
    """Distance from each row of x to its k-th nearest other row."""
    x = x.float()
    return torch.cat(
        [
            torch.cdist(chunk, x).topk(k + 1, dim=1, largest=False).values[:, k]
            for chunk in x.split(ROW_CHUNK)
        ]
    )


def _inside_manifold(queries: Tensor, support: Tensor, radii: Tensor) -> Tensor:
    return torch.cat(
        [(torch.cdist(chunk, support) <= radii).any(dim=1) for chunk in queries.split(ROW_CHUNK)]
    )


def duplicate_fraction(real: Tensor, fake: Tensor, quantile: float = 0.01) -> float:
    """Share of fake samples whose nearest fake neighbour is closer than all but the closest
    ``quantile`` of real nearest-neighbour distances; real data scores about ``quantile``.

    Nearest-neighbour distances shrink as a set grows, so both sets are cut to the same size.
    """
    size = min(len(real), len(fake))
    threshold = torch.quantile(kth_neighbour_distance(real[:size], 1), quantile)
    return (kth_neighbour_distance(fake[:size], 1) < threshold).double().mean().item()


def diversity_ratio(
    real: Tensor,
    fake: Tensor,
    real_classes: Tensor | None = None,
    fake_classes: Tensor | None = None,
) -> float:
    """Mean pairwise feature distance of fake samples over that of real samples, within each
    class (averaged over classes with at least two samples on both sides) or, without classes,
    over the whole sets. About 1 for a faithful generator, near 0 for a collapsed one."""
    if real_classes is None or fake_classes is None:
        return _spread_ratio(real, fake)
    real_classes, fake_classes = real_classes.cpu(), fake_classes.cpu()
    ratios = [
        _spread_ratio(real[real_classes == c], fake[fake_classes == c])
        for c in real_classes.unique()
        if (fake_classes == c).sum() >= 2 and (real_classes == c).sum() >= 2
    ]
    return sum(ratios) / len(ratios) if ratios else 0.0


def _spread_ratio(real: Tensor, fake: Tensor) -> float:
    return _mean_pairwise_distance(fake) / max(_mean_pairwise_distance(real), 1e-12)


def _mean_pairwise_distance(x: Tensor) -> float:
    x = x[:MAX_PAIRWISE].float()
    return torch.pdist(x).mean().item() if len(x) >= 2 else 0.0
