import json
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from gan_engine.artifacts import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ArtifactError,
    GeneratorArtifact,
    write_artifact,
)
from gan_engine.run import export_files
from gan_engine.trainer import Trainer, TrainResult
from tests.gan_engine.conftest import dataset_for, tiny_spec

FASHION_LIKE = [f"class{k}" for k in range(10)]


def export(trainer: Trainer) -> dict[str, bytes]:
    return export_files(
        trainer, TrainResult(trainer.step, stopped_early=False, summary={"fid": 1.5})
    )


@pytest.fixture(scope="module")
def conditional(tmp_path_factory) -> tuple[Trainer, GeneratorArtifact]:
    spec = tiny_spec("digits", model={"conditioning": "concat"})
    trainer = Trainer(spec, dataset_for(spec))
    trainer.fit()
    directory = tmp_path_factory.mktemp("artifact")
    write_artifact(directory, export(trainer))
    return trainer, GeneratorArtifact.load(directory)


def test_config_describes_the_generator(conditional) -> None:
    _, artifact = conditional
    config = artifact.config
    assert config.kind == "image" and config.sample_shape == [1, 8, 8]
    assert config.num_classes == 10 and config.class_names == [str(k) for k in range(10)]
    assert config.model.conditioning == "concat" and config.training_step == 4
    assert config.metrics == {"fid": 1.5} and "127.5" in config.normalisation


def test_round_trip_reproduces_the_trained_generator(conditional) -> None:
    import torch

    trainer, artifact = conditional
    z, labels = torch.randn(5, 16), torch.tensor([0, 1, 2, 3, 4])
    assert torch.equal(trainer.generate(z, labels), artifact.generator(z, labels))


def test_same_seed_same_samples_and_other_seed_differs(conditional) -> None:
    _, artifact = conditional
    a = artifact.sample(labels=[3, 3, 7], seed=11)
    b = artifact.sample(labels=[3, 3, 7], seed=11)
    c = artifact.sample(labels=[3, 3, 7], seed=12)
    assert a.data.dtype == np.uint8 and a.data.shape == (3, 8, 8)
    assert np.array_equal(a.data, b.data) and not np.array_equal(a.data, c.data)
    assert a.labels.tolist() == [3, 3, 7]


def test_class_names_per_class_and_counts(conditional) -> None:
    _, artifact = conditional
    by_name = artifact.sample(class_names=["7"], n=4, seed=1)
    assert by_name.labels.tolist() == [7, 7, 7, 7]
    assert np.array_equal(by_name.data, artifact.sample(labels=[7] * 4, seed=1).data)
    per_class = artifact.sample(per_class=2)
    assert per_class.labels.tolist() == [k for k in range(10) for _ in range(2)]
    assert artifact.sample(n=12).labels.tolist() == [*range(10), 0, 1]


def test_truncation_keeps_samples_deterministic(conditional) -> None:
    _, artifact = conditional
    a = artifact.sample(n=4, seed=2, truncation=0.5)
    assert np.array_equal(a.data, artifact.sample(n=4, seed=2, truncation=0.5).data)
    assert not np.array_equal(a.data, artifact.sample(n=4, seed=2).data)


@pytest.mark.parametrize(
    ("request_", "message", "param"),
    [
        ({"class_names": ["Sneaker"]}, "unknown class names", "class_names"),
        ({"labels": [10]}, "out of range", "labels"),
        ({"labels": [1, 2], "n": 3}, "not a multiple of the 2 labels", "n"),
        ({"class_names": ["1", "2"], "n": 5}, "not a multiple of the 2 class_names", "n"),
        ({"per_class": 2, "n": 3}, "disagrees with per_class", "n"),
        ({"labels": [1], "per_class": 2}, "one of", "per_class"),
        ({"n": 0}, "1 to 4096", "n"),
        ({"per_class": 500}, "1 to 4096", "per_class"),
        ({"n": 2, "truncation": -1.0}, "truncation", "truncation"),
    ],
)
def test_impossible_requests_are_clear_errors_naming_the_field(
    conditional, request_: dict, message: str, param: str
) -> None:
    _, artifact = conditional
    with pytest.raises(ArtifactError, match=message) as raised:
        artifact.sample(**request_)
    assert raised.value.param == param


def test_several_class_names_share_n_equally_in_blocks(conditional) -> None:
    """{"class_names": ["Sneaker", "Bag", "Trouser"], "n": 6} means two of each."""
    _, artifact = conditional
    samples = artifact.sample(class_names=["7", "2", "5"], n=6, seed=3)
    assert samples.labels.tolist() == [7, 7, 2, 2, 5, 5]
    assert artifact.sample(labels=[4, 1], n=4).labels.tolist() == [4, 4, 1, 1]
    image = Image.open(BytesIO(artifact.png(samples)))
    assert image.size == (2 * 10 + 2, 3 * 10 + 2)  # one row of two per class


def test_png_grid_has_one_row_per_class(conditional) -> None:
    _, artifact = conditional
    image = Image.open(BytesIO(artifact.png(artifact.sample(per_class=3))))
    assert image.size == (3 * 10 + 2, 10 * 10 + 2)


def test_unconditional_points_artifact(tmp_path) -> None:
    spec = tiny_spec("ring8")
    trainer = Trainer(spec, dataset_for(spec))
    trainer.fit()
    write_artifact(tmp_path, export(trainer))
    artifact = GeneratorArtifact.load(tmp_path)
    samples = artifact.sample(n=50, seed=0)
    assert samples.data.dtype == np.float32 and samples.data.shape == (50, 2)
    assert samples.labels is None and artifact.config.class_names is None
    assert artifact.png(samples).startswith(b"\x89PNG")
    with pytest.raises(ArtifactError, match="class-conditional"):
        artifact.sample(labels=[0])


def test_broken_artifacts_are_refused(tmp_path, conditional) -> None:
    with pytest.raises(ArtifactError, match="missing"):
        GeneratorArtifact.load(tmp_path)
    trainer, _ = conditional
    files = export(trainer)
    with pytest.raises(ArtifactError, match="not a readable"):
        GeneratorArtifact.from_bytes(b"garbage", files[CONFIG_FILE])
    config = json.loads(files[CONFIG_FILE])
    config["model"]["width"] = 16
    with pytest.raises(ArtifactError, match="do not match"):
        GeneratorArtifact.from_bytes(files[WEIGHTS_FILE], json.dumps(config))


def test_cbn_generator_is_rebuilt_and_samples_its_classes(tmp_path) -> None:
    import torch

    spec = tiny_spec("digits", model={"conditioning": "projection", "g_conditioning": "cbn"})
    trainer = Trainer(spec, dataset_for(spec))
    trainer.fit()
    write_artifact(tmp_path, export(trainer))
    artifact = GeneratorArtifact.load(tmp_path)
    assert artifact.config.model.g_conditioning == "cbn"
    assert artifact.generator.label_input is None and artifact.generator.label_norms
    z, labels = torch.randn(4, 16), torch.tensor([0, 3, 3, 9])
    assert torch.equal(trainer.generate(z, labels), artifact.generator(z, labels))
    sevens = artifact.sample(class_names=["7"], n=3, seed=2)
    assert sevens.labels.tolist() == [7, 7, 7] and sevens.data.shape == (3, 8, 8)
    # 4 steps move the classes' gains and biases by less than a uint8 level, but they move
    z = z[:1].expand(2, -1)
    same_z = artifact.generator(z, torch.tensor([7, 1]))
    assert not torch.equal(same_z[0], same_z[1])
