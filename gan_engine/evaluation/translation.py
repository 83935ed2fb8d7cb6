"""Quality of a translation model (task 'translation') on held-out pairs.

The held-out pairs are the ``holdout_split`` the evaluator classifier also holds out (G never
trains on them), at most ``monitor.eval_samples`` of them. What ``evaluate`` returns:

- always: ``l1`` (mean absolute error, pixels in [0, 1]), ``psnr`` (dB, per image, averaged),
  ``ssim`` (torchmetrics, Gaussian window) and ``hf_energy_ratio``, the sharpness: the energy
  of the outputs' Laplacian (their high frequencies) over the targets'. 1 is as sharp as the real
  images, below 1 blurrier; L1-trained models come out well below it;
- ``fid`` (with ``fid`` in monitor.metrics): outputs vs targets in the evaluator's feature space,
  and ``fid_real_baseline``, the training targets vs the same held-out targets;
- ``class_accuracy`` (with ``class_accuracy`` in monitor.metrics and labelled targets): the share
  of outputs the evaluator assigns to their target's class (content preserved), beside
  ``evaluator_accuracy`` on the real targets;
- super-resolution: every metric above also for the bicubic upsampling of the low-resolution
  input, prefixed ``bicubic_`` (computed once: the inputs never change).

Of a memory-mapped pack, only the held-out pairs (as many as EVALUATION_MAX_BYTES holds), the
baseline's training targets and the evaluator's bounded sample of training targets are read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from gan_engine.data import Dataset, to_model_range
from gan_engine.evaluation import EVALUATION_MAX_BYTES
from gan_engine.evaluation.evaluator import (
    Evaluator,
    EvaluatorCache,
    holdout_split,
    load_or_train_evaluator,
    random_feature_evaluator,
)
from gan_engine.evaluation.metrics import class_accuracy, fid_metric
from gan_engine.spec import Spec

Translate = Callable[[Tensor], Tensor]
"""``translate(inputs uint8 (N, C', H, W))`` -> outputs in model space (N, C, H, W)."""
Announce = Callable[[str, str], None]

EVALUATION_SEED = 0  # the same split as gan_engine.evaluation's
TRANSLATE_CHUNK = 256
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def ssim_window(side: int) -> int:
    """The Gaussian window SSIM uses: 11 (the standard) where the image allows, else the largest
    odd size below the side."""
    return min(11, side - 1 if side % 2 == 0 else side)


def pixel_metrics(outputs: Tensor, targets: Tensor) -> dict[str, float]:
    """L1, PSNR, SSIM and the high-frequency energy ratio of outputs against targets, both
    float (N, C, H, W) in [-1, 1]."""
    out, real = (outputs.float().clamp(-1, 1) + 1) / 2, (targets.float() + 1) / 2
    return {
        "l1": float((out - real).abs().mean()),
        "psnr": float(peak_signal_noise_ratio(out, real, data_range=1.0, dim=(1, 2, 3))),
        "ssim": float(
            structural_similarity_index_measure(
                out, real, data_range=1.0, kernel_size=ssim_window(min(out.shape[-2:]))
            )
        ),
        "hf_energy_ratio": high_frequency_energy(out) / max(high_frequency_energy(real), 1e-12),
    }


def high_frequency_energy(images: Tensor) -> float:
    """Mean squared response to the discrete Laplacian, per channel: what blur removes."""
    channels = images.shape[1]
    kernel = _LAPLACIAN.to(images)[None, None].repeat(channels, 1, 1, 1)
    response = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=channels)
    return float(response.square().mean())


class TranslationEvaluator:
    """The trainer's evaluator for task 'translation': ``evaluate(translate)`` on held-out pairs."""

    def __init__(
        self, *, spec: Spec, dataset: Dataset, cache: EvaluatorCache | None, device: torch.device
    ) -> None:
        assert dataset.inputs is not None, "a translation evaluator needs paired data"
        self.dataset, self.cache, self.device = dataset, cache, device
        self.metrics = set(spec.monitor.metrics)
        self.labelled = dataset.labels is not None and dataset.num_classes > 0
        train_index, held_out = holdout_split(len(dataset), EVALUATION_SEED)
        wanted = held_out[: spec.monitor.eval_samples]
        held_out = wanted
        if dataset.mapped is not None:  # read into memory: as many as the evaluation bound holds
            pair_bytes = math.prod(dataset.sample_shape) + math.prod(dataset.input_shape)
            held_out = wanted[: max(1, EVALUATION_MAX_BYTES // pair_bytes)]
        self.train_index, self.held_out = train_index, held_out
        self.notes = self._limitations()
        if len(held_out) < len(wanted):
            self.notes.append(
                f"'{dataset.name}' is memory-mapped: {len(held_out):,} held-out pairs are "
                f"evaluated, not {len(wanted):,} (what {EVALUATION_MAX_BYTES >> 20} MiB holds)"
            )
        self._pairs: Dataset | None = None  # the held-out pairs, read once
        self._evaluator: Evaluator | None = None
        self._baseline: dict[str, float] | None = None

    def evaluate(self, translate: Translate, announce: Announce | None = None) -> dict[str, float]:
        inputs = self._held_out_pairs().inputs
        assert inputs is not None
        outputs = torch.cat(
            [translate(chunk).detach().float().cpu() for chunk in inputs.split(TRANSLATE_CHUNK)]
        ).nan_to_num(0.0, 1.0, -1.0)
        results = self._metrics_of(outputs, announce)
        if self.dataset.super_resolution:
            if self._baseline is None:
                bicubic = self._metrics_of(to_model_range(inputs), announce)
                shared = ("evaluator_accuracy", "fid_real_baseline")  # the same for both
                self._baseline = {f"bicubic_{k}": v for k, v in bicubic.items() if k not in shared}
            results.update(self._baseline)
        return results

    def _held_out_pairs(self) -> Dataset:
        """The held-out pairs in memory (of a memory-mapped pack: only these rows are read)."""
        if self._pairs is None:
            self._pairs = self.dataset.gathered(self.held_out)
        return self._pairs

    def _metrics_of(self, outputs: Tensor, announce: Announce | None) -> dict[str, float]:
        pairs = self._held_out_pairs()
        targets = to_model_range(pairs.data)
        results = pixel_metrics(outputs, targets)
        wants_classes = "class_accuracy" in self.metrics and self.labelled
        if "fid" not in self.metrics and not wants_classes:
            return results
        evaluator = self._evaluator_for(announce)
        if "fid" in self.metrics:
            fid = fid_metric(evaluator)
            fid.update(targets, real=True)
            fid.update(outputs, real=False)
            results["fid"] = float(fid.compute())
            rng = torch.Generator().manual_seed(EVALUATION_SEED)
            train = self.train_index[torch.randperm(len(self.train_index), generator=rng)]
            fid.reset()
            baseline = self.dataset.gathered(train[: len(outputs)]).data
            fid.update(to_model_range(baseline), real=False)
            results["fid_real_baseline"] = float(fid.compute())
        if wants_classes:
            assert self.dataset.labels is not None and evaluator.accuracy is not None
            predicted = evaluator.predict(outputs).cpu()
            assert pairs.labels is not None
            truth = pairs.labels
            results["class_accuracy"] = class_accuracy(predicted, truth)
            results["evaluator_accuracy"] = evaluator.accuracy
        return results

    def _evaluator_for(self, announce: Announce | None) -> Evaluator:
        if self._evaluator is None:
            # in memory: the whole dataset; memory-mapped: a bounded sample of the training
            # targets (the evaluator reads no input)
            targets = replace(self.dataset, inputs=None)
            dataset = targets.bounded(EVALUATION_MAX_BYTES, EVALUATION_SEED, self.train_index)
            self._evaluator = (
                load_or_train_evaluator(
                    dataset,
                    cache=self.cache,
                    device=self.device,
                    seed=EVALUATION_SEED,
                    announce=announce,
                )
                if self.labelled
                else random_feature_evaluator(dataset, seed=EVALUATION_SEED, device=self.device)
            )
        return self._evaluator

    def _limitations(self) -> list[str]:
        if not self.labelled and ("fid" in self.metrics or "class_accuracy" in self.metrics):
            return [
                f"dataset '{self.dataset.name}' has no labelled targets: FID uses the features "
                "of a randomly initialised network (comparable between runs on this dataset "
                "only), and class accuracy is not reported"
            ]
        return []
