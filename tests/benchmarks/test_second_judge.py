"""The benchmark's second judge learns real classes, and the same seed gives the same judge."""

from __future__ import annotations

import torch

from benchmarks.second_judge import per_class_accuracy, train_pixel_judge
from gan_engine.data import load_dataset
from gan_engine.spec import DatasetSpec


def test_pixel_judge_classifies_held_out_digits_and_is_seeded() -> None:
    train = load_dataset(DatasetSpec(builtin="digits"))
    test = load_dataset(DatasetSpec(builtin="digits", split="test"))
    images, labels = test.batch(torch.arange(len(test)))
    judge = train_pixel_judge(train, seed=3, epochs=4)
    predicted = judge.predict(images)
    per_class = per_class_accuracy(predicted, labels, 10)
    accuracy = (predicted == labels).float().mean().item()
    assert accuracy > 0.8  # chance is 0.1
    assert min(per_class) > 0.4 and len(per_class) == 10
    assert abs(sum(per_class) / 10 - accuracy) < 0.05  # the split is close to balanced
    again = train_pixel_judge(train, seed=3, epochs=4).predict(images)
    assert torch.equal(predicted, again)
