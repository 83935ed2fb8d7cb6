import json

import numpy as np
import pytest
import torch

from gan_engine.anomaly import (
    MAX_SEARCH_WORK,
    NoDiscriminator,
    SearchSettings,
    anomaly_scores,
    discriminator_scores,
    images_from_uint8,
    reconstruction_scores,
)
from gan_engine.artifacts import (
    CONFIG_FILE,
    DISCRIMINATOR_FILE,
    WEIGHTS_FILE,
    ArtifactError,
    GeneratorArtifact,
    write_artifact,
)
from gan_engine.data import DatasetError, load_dataset
from gan_engine.run import export_files
from gan_engine.trainer import Trainer, TrainResult
from tests.gan_engine.conftest import dataset_for, tiny_spec

FAST = SearchSettings(steps=20, starts=2, seed=3)


def export(trainer: Trainer) -> dict[str, bytes]:
    return export_files(trainer, TrainResult(trainer.step, stopped_early=False))


@pytest.fixture(scope="module")
def zeros_model(tmp_path_factory) -> tuple[GeneratorArtifact, torch.Tensor]:
    """An unconditional GAN trained on the digit 0 only, and held-out zeros."""
    spec = tiny_spec(
        dataset={"builtin": "digits", "classes": [0]},
        training={"steps": 150, "batch_size": 32},
        model={"width": 16},
    )
    trainer = Trainer(spec, load_dataset(spec.dataset, image_size=8))
    trainer.fit()
    directory = tmp_path_factory.mktemp("zeros")
    write_artifact(directory, export(trainer))
    test = load_dataset(spec.dataset.model_copy(update={"split": "test"}), image_size=8)
    return GeneratorArtifact.load(directory), test.batch(torch.arange(len(test)))[0]


def test_the_artifact_keeps_the_discriminator(zeros_model, tmp_path) -> None:
    artifact, _ = zeros_model
    assert artifact.discriminator is not None and artifact.config.discriminator
    spec = tiny_spec()
    files = export(Trainer(spec, dataset_for(spec)))
    assert set(files) == {WEIGHTS_FILE, CONFIG_FILE, DISCRIMINATOR_FILE}
    assert json.loads(files[CONFIG_FILE])["discriminator"] is True


def test_scores_have_one_value_per_image_and_repeat_for_a_seed(zeros_model) -> None:
    artifact, zeros = zeros_model
    images = zeros[:5]
    first = anomaly_scores(artifact, images, settings=FAST)
    assert set(first) == {"discriminator", "reconstruction"}
    assert all(len(values) == 5 for values in first.values())
    assert first == anomaly_scores(artifact, images, settings=FAST)
    other = reconstruction_scores(artifact, images, settings=SearchSettings(20, 2, seed=4))
    assert other.tolist() != first["reconstruction"]


def test_an_image_scores_the_same_alone_or_in_a_batch(zeros_model) -> None:
    artifact, zeros = zeros_model
    together = discriminator_scores(artifact, zeros[:6])
    alone = torch.cat([discriminator_scores(artifact, zeros[k : k + 1]) for k in range(6)])
    torch.testing.assert_close(together, alone)


def test_noise_scores_higher_than_the_class_trained_on(zeros_model) -> None:
    artifact, zeros = zeros_model
    normal = zeros[:24]
    noise = torch.rand(24, *normal.shape[1:], generator=torch.Generator().manual_seed(0)) * 2 - 1
    for method, values in anomaly_scores(
        artifact, torch.cat([normal, noise]), settings=FAST
    ).items():
        scores = torch.tensor(values)
        assert scores[24:].median() > scores[:24].median(), method


def test_a_model_without_discriminator_still_has_reconstruction(tmp_path) -> None:
    spec = tiny_spec()
    files = export(Trainer(spec, dataset_for(spec)))
    config = json.loads(files[CONFIG_FILE])
    del config["discriminator"]  # a config.json written before scores existed
    artifact = GeneratorArtifact.from_bytes(files[WEIGHTS_FILE], json.dumps(config))
    images = dataset_for(spec).batch(torch.arange(3))[0]
    assert len(reconstruction_scores(artifact, images, settings=FAST)) == 3
    with pytest.raises(NoDiscriminator):
        discriminator_scores(artifact, images)
    with pytest.raises(NoDiscriminator):
        reconstruction_scores(artifact, images, settings=SearchSettings(feature_weight=0.1))


def test_a_conditional_model_scores_with_the_given_or_the_best_class() -> None:
    spec = tiny_spec(model={"conditioning": "projection"})
    trainer = Trainer(spec, dataset_for(spec))
    trainer.fit()
    artifact = GeneratorArtifact.from_bytes(
        (files := export(trainer))[WEIGHTS_FILE],
        files[CONFIG_FILE],
        discriminator=files[DISCRIMINATOR_FILE],
    )
    images, labels = dataset_for(spec).batch(torch.arange(4))
    best = discriminator_scores(artifact, images)
    for k in range(10):
        given = discriminator_scores(artifact, images, torch.full((4,), k))
        assert bool((best <= given + 1e-5).all())
    scored = reconstruction_scores(artifact, images, labels, settings=FAST)
    assert scored.shape == (4,)
    with pytest.raises(ArtifactError, match="out of range"):
        discriminator_scores(artifact, images, torch.tensor([0, 1, 2, 10]))


def test_uploaded_images_must_have_the_model_shape(zeros_model) -> None:
    artifact, _ = zeros_model
    assert images_from_uint8(artifact, np.zeros((2, 8, 8), np.uint8)).shape == (2, 1, 8, 8)
    assert images_from_uint8(artifact, np.full((1, 8, 8, 1), 255, np.uint8)).max() == 1.0
    padded = images_from_uint8(artifact, np.full((1, 6, 6), 255, np.uint8))  # as training pads
    assert padded.shape == (1, 1, 8, 8) and padded[0, 0, 0, 0] == -1 and padded[0, 0, 1, 1] == 1
    with pytest.raises(ArtifactError, match="8×8"):
        images_from_uint8(artifact, np.zeros((2, 9, 9), np.uint8))
    with pytest.raises(ArtifactError, match="8×8"):
        images_from_uint8(artifact, np.zeros((2, 8, 8, 3), np.uint8))


def test_the_search_is_bounded(zeros_model) -> None:
    artifact, zeros = zeros_model
    with pytest.raises(ArtifactError, match="steps must be"):
        reconstruction_scores(artifact, zeros[:1], settings=SearchSettings(steps=0))
    with pytest.raises(ArtifactError, match="generator evaluations"):
        steps = 500
        count = MAX_SEARCH_WORK // (16 * steps) + 1
        reconstruction_scores(artifact, zeros[:1].repeat(count, 1, 1, 1),
                              settings=SearchSettings(steps=steps, starts=16))  # fmt: skip


def test_dataset_classes_keeps_only_those_classes() -> None:
    spec = tiny_spec(dataset={"builtin": "digits", "classes": [3, 5]})
    dataset = load_dataset(spec.dataset)
    assert dataset.labels is not None and set(dataset.labels.tolist()) == {3, 5}
    assert dataset.class_names is not None and len(dataset.class_names) == 10
    with pytest.raises(DatasetError, match="out of range"):
        load_dataset(spec.dataset.model_copy(update={"classes": [10]}))
