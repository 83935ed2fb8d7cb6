"""Synthetic data for augmentation: the classification accuracy score (CAS) on Fashion-MNIST.

The GAN-train protocol of Shmelkov et al. (2018), called the classification accuracy score by
Ravuri & Vinyals (2019): train a conditional GAN, then train one fixed small classifier (the same
CNN, the same epochs and batch size) on

  (a) ``--per-class`` synthetic images of every class, sampled from the trained generator as the
      service does (``GeneratorArtifact.sample``: seeded z, optional truncation);
  (b) the same number of real training images of every class;
  (c) ``--small`` (50) real images per class;
  (d) those 50 real per class plus the ``--per-class`` synthetic ones;

and report each one's accuracy on the 10,000 real test images. For every GAN seed the generator is
trained once (``benchmarks/specs/fashion-mnist-cas.yaml``); every classifier seed draws its own
real subset, synthetic samples and initialisation.

    GANFORGE_DATA_DIR=../shared/datasets OMP_NUM_THREADS=1 \
        python benchmarks/synthetic_augmentation.py --gan-seeds 1 --classifier-seeds 1 2 3

``--generator DIR`` reuses a trained artifact (a run folder or an unzipped model export) instead
of training one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from gan_engine.artifacts import GeneratorArtifact, write_artifact
from gan_engine.data import Dataset, load_dataset, to_model_range
from gan_engine.run import build_trainer, export_files, load_training_data
from gan_engine.spec import DatasetSpec, load_spec, parse_spec

SPEC = Path("benchmarks/specs/fashion-mnist-cas.yaml")
IMAGE_SIZE = 32
EPOCHS, BATCH, LR = 10, 64, 1e-3
CONDITIONS = ("a: synthetic only", "b: real only", "c: 50 real", "d: 50 real + synthetic")


class SmallCNN(nn.Sequential):
    """The fixed classifier: two conv-ReLU-maxpool stages, a hidden layer, dropout."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(128, num_classes),
        )  # fmt: skip


def train_classifier(images: torch.Tensor, labels: torch.Tensor, *, seed: int) -> nn.Module:
    """The same schedule whatever the set: EPOCHS passes over it, at least 300 steps (a set of
    500 images would otherwise get a tenth of the updates of one of 5,000)."""
    torch.manual_seed(seed)
    model = SmallCNN(int(labels.max()) + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    steps = max(300, EPOCHS * -(-len(images) // BATCH))
    rng = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        index = torch.randint(len(images), (BATCH,), generator=rng)
        loss = F.cross_entropy(model(images[index]), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.inference_mode()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    correct = sum(
        int((model(images[i : i + 1000]).argmax(1) == labels[i : i + 1000]).sum())
        for i in range(0, len(images), 1000)
    )
    return correct / len(images)


def real_subset(train: Dataset, per_class: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    assert train.labels is not None
    rng = torch.Generator().manual_seed(seed)
    index = torch.cat([
        torch.nonzero(train.labels == k).flatten()[
            torch.randperm(int((train.labels == k).sum()), generator=rng)[:per_class]
        ]
        for k in range(train.num_classes)
    ])  # fmt: skip
    images, labels = train.batch(index)
    assert labels is not None
    return images, labels


def synthetic(artifact: GeneratorArtifact, per_class: int, *, seed: int,
              truncation: float | None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``per_class`` samples of every class as uint8 images, the service's sampling path; then
    into the classifier's range like real images."""
    images, labels = [], []
    for k in range(artifact.config.num_classes):
        samples = artifact.sample(labels=[k], n=per_class, seed=seed * 1000 + k,
                                  truncation=truncation)  # fmt: skip
        data = torch.from_numpy(samples.data)
        data = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)
        images.append(to_model_range(data))
        labels.append(torch.full((per_class,), k, dtype=torch.int64))
    return torch.cat(images), torch.cat(labels)


def trained_generator(seed: int, steps: int | None, out: Path) -> GeneratorArtifact:
    base = load_spec(SPEC).to_dict()
    base["training"]["seed"] = seed
    if steps:
        base["training"]["steps"] = steps
    spec, dataset = load_training_data(parse_spec(base))
    trainer = build_trainer(spec, dataset)
    started = time.perf_counter()
    result = trainer.fit()
    print(f"gan seed {seed}: {result.step} steps in {time.perf_counter() - started:.0f} s",
          flush=True)  # fmt: skip
    write_artifact(out / f"gan-seed{seed}", export_files(trainer, result))
    return GeneratorArtifact.load(out / f"gan-seed{seed}")


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gan-seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--classifier-seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, help="override the spec's training.steps")
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--small", type=int, default=50, help="real images per class in c, d")
    parser.add_argument("--truncation", type=float)
    parser.add_argument("--generator", type=Path, help="a trained artifact folder: no training")
    parser.add_argument("--out", type=Path, default=Path("runs/synthetic-augmentation"))
    args = parser.parse_args()
    train = load_dataset(DatasetSpec(builtin="fashion-mnist"), image_size=IMAGE_SIZE)
    test = load_dataset(DatasetSpec(builtin="fashion-mnist", split="test"), image_size=IMAGE_SIZE)
    test_images, test_labels = test.batch(torch.arange(len(test)))
    assert test_labels is not None
    scores: dict[str, list[float]] = {c: [] for c in CONDITIONS}
    for gan_seed in args.gan_seeds:
        artifact = (
            GeneratorArtifact.load(args.generator)
            if args.generator
            else trained_generator(gan_seed, args.steps, args.out)
        )
        for seed in args.classifier_seeds:
            fake_x, fake_y = synthetic(artifact, args.per_class, seed=seed,
                                       truncation=args.truncation)  # fmt: skip
            real_x, real_y = real_subset(train, args.per_class, seed=seed)
            small_x, small_y = real_subset(train, args.small, seed=seed)
            sets = {
                CONDITIONS[0]: (fake_x, fake_y),
                CONDITIONS[1]: (real_x, real_y),
                CONDITIONS[2]: (small_x, small_y),
                CONDITIONS[3]: (torch.cat([small_x, fake_x]), torch.cat([small_y, fake_y])),
            }
            for condition, (x, y) in sets.items():
                score = accuracy(train_classifier(x, y, seed=seed), test_images, test_labels)
                scores[condition].append(score)
                print(f"gan {gan_seed} classifier {seed} {condition}: {score:.4f}", flush=True)
    runs = len(args.gan_seeds) * len(args.classifier_seeds)
    print(f"\nGAN seeds {args.gan_seeds}, classifier seeds {args.classifier_seeds} ({runs} runs), "
          f"{args.per_class} per class, truncation {args.truncation}, "
          f"{torch.get_num_threads()} CPU threads\n")  # fmt: skip
    print("| training set | test accuracy (real test split), mean ± std |\n|---|---|")
    for condition, values in scores.items():
        print(f"| {condition} | {mean_std(values)} |")


if __name__ == "__main__":
    main()
