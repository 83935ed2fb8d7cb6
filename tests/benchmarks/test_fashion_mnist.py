"""The Fashion-MNIST benchmark judges truncated samples exactly as the service serves them."""

from __future__ import annotations

import pytest
import torch

from benchmarks import fashion_mnist
from gan_engine.artifacts import CONFIG_FILE, WEIGHTS_FILE, GeneratorArtifact
from gan_engine.images import channels_first
from gan_engine.run import build_trainer, export_files
from tests.gan_engine.conftest import dataset_for, tiny_spec


def test_truncated_samples_are_the_served_ones_of_every_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = tiny_spec("digits", model={"conditioning": "projection"})
    trainer = build_trainer(spec, dataset_for(spec))
    files = export_files(trainer, trainer.fit())
    artifact = GeneratorArtifact.from_bytes(files[WEIGHTS_FILE], files[CONFIG_FILE])
    monkeypatch.setattr(fashion_mnist, "PER_CLASS", 3)

    images, labels = fashion_mnist.served_per_class(artifact, 10, seed=5, truncation=0.5)

    assert images.shape == (30, *artifact.config.sample_shape)
    assert labels.tolist() == [k for k in range(10) for _ in range(3)]
    assert images.min() >= -1 and images.max() <= 1
    served = artifact.sample(labels=[4], n=3, seed=5 + 100 + 4, truncation=0.5)  # the API's call
    assert torch.equal(images[12:15], channels_first(served.data).float() / 127.5 - 1)
    untruncated, _ = fashion_mnist.served_per_class(artifact, 10, seed=5, truncation=100.0)
    assert not torch.equal(images, untruncated)
