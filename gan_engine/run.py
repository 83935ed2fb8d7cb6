"""Assembling a run from a spec: data, networks, evaluation and diagnostics around the Trainer."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from gan_engine.artifacts import artifact_files
from gan_engine.callbacks import Callback
from gan_engine.data import Dataset, load_dataset
from gan_engine.data.builtins import fit_data
from gan_engine.diagnostics import Diagnostics
from gan_engine.evaluation import EvaluatorCache, RunEvaluator
from gan_engine.evaluation.translation import TranslationEvaluator
from gan_engine.spec import Spec
from gan_engine.trainer import Trainer, TrainResult


def load_training_data(
    spec: Spec, *, data_dir: Path | None = None, pack_path: Path | None = None
) -> tuple[Spec, Dataset]:
    """The run's data, fitted to the model's image size, and the spec with that size resolved
    (an unset ``model.image_size`` follows the data). ``pack_path``: the local copy of an
    uploaded dataset (``{"id": ...}``)."""
    return fit_data(spec, load_dataset(spec.dataset, data_dir=data_dir, pack_path=pack_path))


def build_trainer(
    spec: Spec,
    dataset: Dataset,
    *,
    callbacks: Sequence[Callback] = (),
    evaluator_cache: EvaluatorCache | None = None,
    device: torch.device | None = None,
) -> Trainer:
    """A Trainer with quality metrics every ``monitor.eval_every`` steps and diagnostics on
    (on rank 0 only, in a run on several devices)."""
    trainer = Trainer(spec, dataset, callbacks=callbacks, device=device)
    if not trainer.world.is_main:
        return trainer
    evaluator = TranslationEvaluator if spec.task == "translation" else RunEvaluator
    trainer.evaluator = evaluator(
        spec=trainer.spec, dataset=trainer.dataset, cache=evaluator_cache, device=trainer.device
    )
    trainer.diagnostics = Diagnostics(spec, trainer.num_classes)
    return trainer


def export_files(trainer: Trainer, result: TrainResult) -> dict[str, bytes]:
    """The one place that decides a trained run's artifact files: the (EMA) generator's
    weights, config.json, and the discriminator's weights (for anomaly scores)."""
    return artifact_files(
        trainer.sampling_generator,
        model=trainer.spec.model,
        sample_shape=trainer.dataset.sample_shape,
        class_names=trainer.dataset.class_names,
        dataset=trainer.dataset.name,
        step=result.step,
        metrics=result.summary,
        task=trainer.spec.task,
        input_shape=None if trainer.dataset.inputs is None else trainer.dataset.input_shape,
        # the scores' discriminator; a translation model's PatchGAN scores nothing (yet)
        discriminator=trainer.D if trainer.spec.task == "generation" else None,
    )
