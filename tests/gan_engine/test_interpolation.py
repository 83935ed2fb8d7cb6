import io

import numpy as np
import pytest
import torch
from PIL import Image

from gan_engine.artifacts import ArtifactError, GeneratorArtifact, write_artifact
from gan_engine.interpolation import (
    ModelKindError,
    gif_bytes,
    interpolate,
    npy_bytes,
    slerp,
    strip_png,
)
from gan_engine.run import export_files
from gan_engine.trainer import Trainer, TrainResult
from tests.gan_engine.conftest import dataset_for, tiny_spec


def artifact_of(spec_builtin: str, directory, **model) -> GeneratorArtifact:
    spec = tiny_spec(spec_builtin, model=model)
    trainer = Trainer(spec, dataset_for(spec))
    trainer.fit()
    write_artifact(directory, export_files(trainer, TrainResult(4, stopped_early=False)))
    return GeneratorArtifact.load(directory)


@pytest.fixture(scope="module", params=["concat", "cbn"])
def digits(tmp_path_factory, request: pytest.FixtureRequest) -> GeneratorArtifact:
    """A projection model whose G takes the label either way (``model.g_conditioning``)."""
    return artifact_of(
        "digits",
        tmp_path_factory.mktemp("digits"),
        conditioning="projection",
        g_conditioning=request.param,
    )


@pytest.fixture(scope="module")
def ring(tmp_path_factory) -> GeneratorArtifact:
    return artifact_of("ring8", tmp_path_factory.mktemp("ring"))


def test_slerp_keeps_the_ends_and_the_norm_of_equal_norm_vectors() -> None:
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    path = slerp(a, b, torch.linspace(0, 1, 5))
    assert torch.allclose(path[0], a) and torch.allclose(path[-1], b)
    assert torch.allclose(path.norm(dim=1), torch.ones(5), atol=1e-6)
    assert torch.allclose(path[2], torch.tensor([2**-0.5, 2**-0.5]), atol=1e-6)
    assert torch.allclose(slerp(a, a, torch.tensor([0.5])), a[None])  # parallel: no NaN


def test_seed_walk_ends_are_the_seeds_samples(digits: GeneratorArtifact) -> None:
    walk = interpolate(digits, from_seed=3, to_seed=9, from_class="7", frames=6)
    assert walk.frames.data.shape == (6, 8, 8) and walk.frames.labels.tolist() == [7] * 6
    first = digits.sample(labels=[7], n=1, seed=3).data[0]
    last = digits.sample(labels=[7], n=1, seed=9).data[0]
    assert np.array_equal(walk.frames.data[0], first)
    assert np.array_equal(walk.frames.data[-1], last)
    assert np.allclose(walk.t, np.linspace(0, 1, 6))


def test_class_walk_at_fixed_noise_goes_from_one_class_to_the_other(
    digits: GeneratorArtifact,
) -> None:
    walk = interpolate(digits, from_seed=5, from_class=2, to_class="8", frames=4)
    assert walk.frames.labels is None  # the middle frames belong to no one class
    assert np.array_equal(walk.frames.data[0], digits.sample(labels=[2], n=1, seed=5).data[0])
    assert np.array_equal(walk.frames.data[-1], digits.sample(labels=[8], n=1, seed=5).data[0])
    both = interpolate(digits, from_seed=5, to_seed=6, from_class=2, to_class=8, frames=4)
    assert np.array_equal(both.frames.data[-1], digits.sample(labels=[8], n=1, seed=6).data[0])


def test_same_request_same_bytes_in_every_format(digits: GeneratorArtifact) -> None:
    def encoded() -> list[bytes]:
        walk = interpolate(digits, from_seed=1, to_seed=2, frames=5, truncation=0.8)
        return [strip_png(digits, walk), gif_bytes(digits, walk), npy_bytes(walk)]

    first = encoded()
    assert first == encoded()
    strip = Image.open(io.BytesIO(first[0]))
    assert strip.size == (5 * 10 + 2, 12)  # one row of 8x8 frames with 2-pixel gaps
    gif = Image.open(io.BytesIO(first[1]))
    assert gif.format == "GIF" and gif.n_frames == 8 and gif.info["loop"] == 0  # there and back
    assert np.load(io.BytesIO(first[2])).shape == (5, 8, 8)


def test_wrong_requests_and_wrong_kinds_of_model(
    digits: GeneratorArtifact, ring: GeneratorArtifact
) -> None:
    with pytest.raises(ArtifactError, match="nothing to walk") as nothing:
        interpolate(digits, from_seed=1)
    assert nothing.value.param == "to_seed"
    for frames in (1, 65):
        with pytest.raises(ArtifactError, match="frames must be 2 to 64"):
            interpolate(digits, to_seed=1, frames=frames)
    with pytest.raises(ArtifactError, match="unknown class 'Sneaker'"):
        interpolate(digits, to_class="Sneaker")
    with pytest.raises(ArtifactError, match="out of range"):
        interpolate(digits, to_class=10)
    with pytest.raises(ModelKindError, match="class-conditional") as unconditional:
        interpolate(ring, to_seed=2, to_class=1)
    assert unconditional.value.param == "to_class"
    walk = interpolate(ring, from_seed=0, to_seed=1, frames=3)
    assert np.load(io.BytesIO(npy_bytes(walk))).shape == (3, 2)
    with pytest.raises(ModelKindError, match="2-D points: use npy"):
        strip_png(ring, walk)
    with pytest.raises(ModelKindError, match="2-D points"):
        gif_bytes(ring, walk)
