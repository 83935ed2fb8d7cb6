from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gan_engine.data import Dataset
from gan_engine.evaluation import Evaluator, FolderEvaluatorCache, load_or_train_evaluator
from gan_engine.evaluation.evaluator import (
    EvaluatorConfig,
    EvaluatorNet,
    cache_key,
    dataset_fingerprint,
    holdout_split,
    random_feature_evaluator,
)

CPU = torch.device("cpu")


class CountingCache(FolderEvaluatorCache):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.puts = 0

    def put(self, key: str, data: bytes) -> None:
        self.puts += 1
        super().put(key, data)


def test_trains_on_digits_to_a_good_held_out_accuracy(digits_evaluator: Evaluator) -> None:
    assert not digits_evaluator.from_cache
    assert digits_evaluator.accuracy is not None and digits_evaluator.accuracy >= 0.9


def test_features_and_logits_shapes(digits: Dataset, digits_evaluator: Evaluator) -> None:
    images, _ = digits.batch(torch.arange(700))  # more than one internal chunk
    features = digits_evaluator.features(images)
    assert features.shape == (700, digits_evaluator.num_features)
    logits = digits_evaluator.logits(images)
    assert logits.shape == (700, 10)
    torch.testing.assert_close(digits_evaluator.logits_of_features(features), logits)


def test_the_cache_round_trips_without_training(
    digits: Dataset, digits_evaluator: Evaluator, evaluator_cache_dir: Path
) -> None:
    cache = CountingCache(evaluator_cache_dir)
    loaded = load_or_train_evaluator(digits, cache=cache, device=CPU)
    assert loaded.from_cache and cache.puts == 0
    assert loaded.accuracy == digits_evaluator.accuracy
    assert loaded.config == digits_evaluator.config
    images, _ = digits.batch(torch.arange(64))
    torch.testing.assert_close(loaded.features(images), digits_evaluator.features(images))


def test_a_corrupt_cache_entry_is_retrained(digits: Dataset, tmp_path: Path) -> None:
    small = Dataset(digits.data[:300], digits.labels[:300], digits.class_names, "digits-300")
    cache = CountingCache(tmp_path)
    config = EvaluatorConfig(epochs=1)
    cache.put(cache_key(dataset_fingerprint(small), config), b"not safetensors")
    evaluator = load_or_train_evaluator(small, cache=cache, device=CPU, epochs=1)
    assert not evaluator.from_cache and cache.puts == 2
    assert load_or_train_evaluator(small, cache=cache, device=CPU, epochs=1).from_cache


def test_the_cache_key_follows_content_and_config(digits: Dataset) -> None:
    fingerprint = dataset_fingerprint(digits)
    assert fingerprint == dataset_fingerprint(
        Dataset(digits.data.clone(), digits.labels, digits.class_names, "renamed")
    )
    relabelled = Dataset(digits.data, digits.labels.roll(1), digits.class_names, "digits")
    assert dataset_fingerprint(relabelled) != fingerprint
    keys = {
        cache_key(fingerprint, EvaluatorConfig(epochs=3)),
        cache_key(fingerprint, EvaluatorConfig(epochs=4)),
        cache_key(fingerprint, EvaluatorConfig(epochs=3, seed=1)),
    }
    assert len(keys) == 3


def test_the_holdout_split_is_deterministic_and_disjoint() -> None:
    train, held_out = holdout_split(1797, seed=0)
    assert len(held_out) == 180 and len(train) == 1617
    assert not set(train.tolist()) & set(held_out.tolist())
    torch.testing.assert_close(holdout_split(1797, seed=0)[1], held_out)
    assert not torch.equal(holdout_split(1797, seed=1)[1], held_out)


def test_training_leaves_the_global_rng_alone(digits: Dataset) -> None:
    small = Dataset(digits.data[:200], digits.labels[:200], digits.class_names, "digits-200")
    state = torch.get_rng_state()
    load_or_train_evaluator(small, cache=None, device=CPU, epochs=1)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(("channels", "size"), [(1, 8), (3, 16), (1, 28), (3, 32), (3, 64)])
def test_the_network_takes_1_or_3_channels_from_8_to_64_pixels(channels: int, size: int) -> None:
    net = EvaluatorNet(channels, size, num_classes=5)
    assert net(torch.zeros(2, channels, size, size)).shape == (2, 5)
    assert net.body(torch.zeros(2, channels, size, size)).shape == (2, net.num_features)


def test_unlabelled_data_gets_random_features_not_a_classifier(digits: Dataset) -> None:
    unlabelled = Dataset(digits.data, None, None, "unlabelled")
    with pytest.raises(ValueError, match="labels"):
        load_or_train_evaluator(unlabelled, cache=None, device=CPU)
    evaluator = random_feature_evaluator(unlabelled, seed=0, device=CPU)
    assert evaluator.accuracy is None
    features = evaluator.features(unlabelled.batch(torch.arange(100))[0])
    assert features.std(0).mean() > 0.01  # calibrated BatchNorm keeps them well scaled
