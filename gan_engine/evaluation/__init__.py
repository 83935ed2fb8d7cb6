"""Evaluating a run offline: an evaluator classifier trained on the dataset's own real images gives
the feature space for FID, precision/recall and the diversity metrics; 2-D mixtures use the PacGAN
protocol.

What ``RunEvaluator.evaluate`` returns, by ``monitor.metrics``:

- ``fid``: ``fid`` (generated vs the held-out real split) and ``fid_real_baseline`` (real training
  images vs the same held-out split, with as many images as the generated side: what a perfect
  generator would score).
- ``class_accuracy`` (conditional models): ``class_accuracy``, the share of samples the evaluator
  assigns to their conditioned class, to be read against ``evaluator_accuracy`` (its held-out
  accuracy on real images), which is returned whenever a classifier was trained; and
  ``lowest_class_accuracy``, the same share for the class recognised least.
- ``coverage``: ``class_coverage`` and ``class_kl`` = KL(generated class histogram || reference),
  the reference being the requested labels (conditional) or the evaluator's predictions on real
  images (unconditional); ``diversity_ratio`` and ``duplicate_fraction`` (see metrics.py).
- ``precision_recall``: ``precision`` and ``recall`` (k = 3).
- 2-D mixtures, whatever the list: ``modes_captured``, ``high_quality_fraction``, ``reverse_kl``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torchmetrics.image.fid import FrechetInceptionDistance

from gan_engine.data import Dataset
from gan_engine.data.mixtures import MIXTURES
from gan_engine.evaluation.evaluator import (
    Evaluator,
    EvaluatorCache,
    FolderEvaluatorCache,
    holdout_split,
    load_or_train_evaluator,
    random_feature_evaluator,
)
from gan_engine.evaluation.metrics import (
    class_accuracy,
    class_coverage,
    class_histogram,
    diversity_ratio,
    duplicate_fraction,
    fid_metric,
    kl_divergence,
    lowest_class_accuracy,
    precision_recall,
)
from gan_engine.evaluation.mixture2d import mixture_metrics
from gan_engine.spec import Spec

__all__ = [
    "Evaluator",
    "EvaluatorCache",
    "FolderEvaluatorCache",
    "RunEvaluator",
    "Sampler",
    "load_or_train_evaluator",
    "mixture_metrics",
]

Announce = Callable[[str, str], None]
"""``announce(code, message)``: tell the run's owner what evaluation is doing (an info event)."""

# what an evaluation's event quotes, of the metrics it computed
HEADLINE_METRICS = (
    "fid", "class_accuracy", "precision", "recall", "modes_captured", "high_quality_fraction"
)  # fmt: skip

# what a run's best checkpoint is chosen by, lower being better: the first of these it reports
BEST_CHECKPOINT_METRICS = ("fid", "reverse_kl")

Sampler = Callable[[int, Tensor | None], Tensor]
"""``sample(n, labels)``: n independent samples in model space; labels int64 (n,) or None."""

EVALUATION_SEED = 0  # fixed, so runs on the same dataset share an evaluator and real subsets
MAX_REFERENCE = 10_000  # held-out images in the FID reference
# Of memory-mapped data, evaluation reads a seeded sample of this many bytes of images, once.
EVALUATION_MAX_BYTES = 128 * 1024 * 1024
REFERENCE_CHUNK = 1000  # of them converted to float at once


@dataclass
class _RealReference:
    """What evaluation compares against, prepared once per RunEvaluator."""

    evaluator: Evaluator
    fid: FrechetInceptionDistance  # real side: the held-out split
    fid_baseline: float
    features: Tensor  # (m, F) of a real training subset as large as the generated side
    classes: Tensor | None  # the subset's labels
    predicted_histogram: Tensor | None  # the evaluator's class shares on that subset


class RunEvaluator:
    """Quality metrics of a run's generator; the trainer calls ``evaluate`` every eval_every steps.

    The evaluator classifier is loaded or trained on the first image evaluation and reused. Never
    touches torch's global RNG, so evaluating cannot change a training run's randomness.
    ``notes`` says in plain words what this run's evaluation cannot report, and why.
    """

    def __init__(
        self, *, spec: Spec, dataset: Dataset, cache: EvaluatorCache | None, device: torch.device
    ) -> None:
        self.dataset, self.cache, self.device = dataset, cache, device
        self.metrics = set(spec.monitor.metrics)
        self.sample_count = spec.monitor.eval_samples
        self.conditional = spec.model.conditioning != "none"
        self.labelled = dataset.labels is not None and dataset.num_classes > 0
        self.notes = self._limitations()
        self._reference: _RealReference | None = None

    def evaluate(self, sample: Sampler, announce: Announce | None = None) -> dict[str, float]:
        labels = self._balanced_labels() if self.conditional and self.labelled else None
        if self.dataset.is_points:
            mixture = MIXTURES.get(self.dataset.name)
            if mixture is None:
                return {}  # see notes
            return mixture_metrics(sample(self.sample_count, labels), mixture)
        fake = sample(self.sample_count, labels).detach().float().nan_to_num(0.0, 1.0, -1.0)
        return self._image_metrics(fake, labels, announce)

    def _image_metrics(
        self, fake: Tensor, labels: Tensor | None, announce: Announce | None
    ) -> dict[str, float]:
        ref = self._reference or self._prepare(announce)
        size = len(ref.features)
        fake_features = ref.evaluator.features(fake).cpu()
        results: dict[str, float] = {}
        if "fid" in self.metrics:
            ref.fid.update(fake[:size], real=False)
            results["fid"] = float(ref.fid.compute())
            results["fid_real_baseline"] = ref.fid_baseline
            ref.fid.reset()
        if "precision_recall" in self.metrics:
            results["precision"], results["recall"] = precision_recall(
                ref.features, fake_features[:size]
            )
        if "coverage" in self.metrics:
            results["duplicate_fraction"] = duplicate_fraction(ref.features, fake_features)
        if not self.labelled:
            if "coverage" in self.metrics:
                results["diversity_ratio"] = diversity_ratio(ref.features, fake_features)
            return results
        assert ref.evaluator.accuracy is not None and ref.predicted_histogram is not None
        results["evaluator_accuracy"] = ref.evaluator.accuracy
        predicted = ref.evaluator.logits_of_features(fake_features).argmax(1).cpu()
        if "class_accuracy" in self.metrics and labels is not None:
            results["class_accuracy"] = class_accuracy(predicted, labels)
            results["lowest_class_accuracy"] = lowest_class_accuracy(predicted, labels)
        if "coverage" in self.metrics:
            k = self.dataset.num_classes
            target = ref.predicted_histogram if labels is None else class_histogram(labels, k)
            histogram = class_histogram(predicted, k)
            results["class_coverage"] = class_coverage(histogram, target)
            results["class_kl"] = kl_divergence(histogram, target)
            fake_classes = predicted if labels is None else labels
            results["diversity_ratio"] = diversity_ratio(
                ref.features, fake_features, ref.classes, fake_classes
            )
        return results

    def _prepare(self, announce: Announce | None) -> _RealReference:
        dataset = self.dataset.bounded(EVALUATION_MAX_BYTES, EVALUATION_SEED)
        if self.labelled:
            evaluator = load_or_train_evaluator(
                dataset, cache=self.cache, device=self.device, seed=EVALUATION_SEED,
                announce=announce,
            )  # fmt: skip
        else:
            evaluator = random_feature_evaluator(dataset, seed=EVALUATION_SEED, device=self.device)
        train_index, held_out_index = holdout_split(len(dataset), EVALUATION_SEED)
        rng = torch.Generator().manual_seed(EVALUATION_SEED)
        size = min(self.sample_count, len(train_index))
        subset = train_index[torch.randperm(len(train_index), generator=rng)[:size]]
        real_images, real_classes = dataset.batch(subset)
        fid = fid_metric(evaluator)
        for chunk in held_out_index[:MAX_REFERENCE].split(REFERENCE_CHUNK):
            fid.update(dataset.batch(chunk)[0], real=True)
        fid.update(real_images, real=False)
        baseline = float(fid.compute())
        fid.reset()
        features = evaluator.features(real_images).cpu()
        histogram = None
        if self.labelled:
            predicted = evaluator.logits_of_features(features).argmax(1).cpu()
            histogram = class_histogram(predicted, dataset.num_classes)
        self._reference = _RealReference(
            evaluator, fid, baseline, features, real_classes, histogram
        )
        return self._reference

    def _balanced_labels(self) -> Tensor:
        return torch.arange(self.sample_count) % self.dataset.num_classes

    def _limitations(self) -> list[str]:
        dataset, notes = self.dataset, []
        if dataset.is_points:
            if dataset.name not in MIXTURES:
                notes.append(
                    f"dataset '{dataset.name}' is 2-D points but not one of the PacGAN mixtures "
                    f"({', '.join(MIXTURES)}): no quality metrics are computed for it"
                )
            return notes
        if not self.labelled:
            notes.append(
                f"dataset '{dataset.name}' has no labels, so no evaluator classifier can be "
                "trained: FID, precision/recall, diversity and duplicates use the features of a "
                "randomly initialised network (comparable between runs on this dataset only), and "
                "class accuracy and class coverage are not reported"
            )
        elif "class_accuracy" in self.metrics and not self.conditional:
            notes.append(
                "class_accuracy needs a conditional model (model.conditioning other than 'none'); "
                "use 'coverage' to see which classes an unconditional model produces"
            )
        return notes
