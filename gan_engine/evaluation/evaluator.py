"""The evaluator: a small CNN classifier trained on a dataset's own real images.

Its held-out accuracy is the reference a generator's class accuracy is read against, and its
penultimate layer is the feature space of FID, precision/recall and the diversity metrics, so
evaluation needs no internet and no Inception weights. Trained evaluators are cached by a content
fingerprint of the dataset plus the training config, as safetensors (never pickle).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_engine.data import Dataset, to_model_range
from gan_engine.events import EVALUATOR_TRAINING_FINISHED, EVALUATOR_TRAINING_STARTED

CACHE_FORMAT = 1
HOLDOUT_FRACTION = 0.1
FEATURE_BATCH = 512
_CACHE_KEY = re.compile(r"^[0-9a-z_-]{1,128}$")


class EvaluatorCache(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...


class FolderEvaluatorCache:
    """One ``{key}.safetensors`` file per evaluator in a local folder (created on first put)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _file(self, key: str) -> Path:
        if not _CACHE_KEY.match(key):
            raise ValueError(f"invalid evaluator cache key {key!r}")
        return self.path / f"{key}.safetensors"

    def get(self, key: str) -> bytes | None:
        try:
            return self._file(key).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        target = self._file(key)
        partial = target.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(data)
        os.replace(partial, target)  # readers never see a half-written file


@dataclass(frozen=True)
class EvaluatorConfig:
    """Everything that changes a trained evaluator besides the data; part of the cache key."""

    epochs: int
    seed: int = 0
    batch_size: int = 128
    lr: float = 2e-3
    width: int = 32
    holdout_fraction: float = HOLDOUT_FRACTION


def default_epochs(train_count: int, batch_size: int = 128) -> int:
    """At least ~150 optimiser steps: 1 epoch of Fashion-MNIST's 54k, 12 of digits' 1.6k."""
    steps_per_epoch = math.ceil(train_count / batch_size)
    return max(1, min(30, math.ceil(150 / steps_per_epoch)))


class EvaluatorNet(nn.Module):
    """conv-BN-ReLU stages, halving the resolution down to 2×2, then global average pooling.

    The stem keeps full resolution for images up to 16 px and halves it above, so a 32 px image
    costs about 3 M multiply-adds: cheap enough to train on a CPU in a minute or two.
    """

    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        stem_stride = 2 if image_size >= 32 else 1
        layers: list[nn.Module] = [*_conv_bn_relu(channels, width, stem_stride)]
        size, c = math.ceil(image_size / stem_stride), width
        while size > 2:
            out = min(2 * c, 4 * width)
            layers += _conv_bn_relu(c, out, 2)
            size, c = math.ceil(size / 2), out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.num_features = c
        self.head = nn.Linear(c, max(num_classes, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
    return [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class Evaluator:
    """A trained (or, for unlabelled data, randomly initialised) EvaluatorNet in eval mode.

    ``features``/``logits``/``predict`` take float images in model space ([-1, 1], (N, C, H, W))
    on any device and return tensors on ``device``.
    """

    def __init__(
        self,
        net: EvaluatorNet,
        *,
        accuracy: float | None,
        config: EvaluatorConfig,
        fingerprint: str,
        device: torch.device,
        from_cache: bool = False,
    ) -> None:
        self.net = net.to(device).eval()
        self.accuracy = accuracy  # held-out accuracy; None when it was never trained
        self.config, self.fingerprint, self.device = config, fingerprint, device
        self.from_cache = from_cache
        self.num_features = net.num_features

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        return torch.cat([self.net.body(chunk) for chunk in self._chunks(x)])

    @torch.no_grad()
    def logits(self, x: Tensor) -> Tensor:
        return torch.cat([self.net(chunk) for chunk in self._chunks(x)])

    def predict(self, x: Tensor) -> Tensor:
        return self.logits(x).argmax(1)

    @torch.no_grad()
    def logits_of_features(self, features: Tensor) -> Tensor:
        """The classifier head alone: logits of already computed ``features``."""
        return self.net.head(features.to(self.device, torch.float32))

    def _chunks(self, x: Tensor) -> list[Tensor]:
        return [
            chunk.to(self.device, torch.float32).clamp(-1, 1) for chunk in x.split(FEATURE_BATCH)
        ]


def dataset_fingerprint(dataset: Dataset) -> str:
    """sha256 over shape, data bytes, labels and class names: equal content, equal fingerprint."""
    digest = hashlib.sha256()
    digest.update(json.dumps([list(dataset.data.shape), str(dataset.data.dtype)]).encode())
    digest.update(dataset.data.contiguous().numpy().tobytes())
    if dataset.labels is not None:
        digest.update(dataset.labels.to(torch.int64).contiguous().numpy().tobytes())
    digest.update(json.dumps(dataset.class_names).encode())
    return digest.hexdigest()


def holdout_split(
    count: int, seed: int, fraction: float = HOLDOUT_FRACTION
) -> tuple[Tensor, Tensor]:
    """Deterministic (train, held-out) index tensors; the held-out part is ``fraction`` of count."""
    permutation = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    held_out = max(1, round(count * fraction))
    return permutation[held_out:].sort().values, permutation[:held_out].sort().values


def cache_key(fingerprint: str, config: EvaluatorConfig) -> str:
    text = json.dumps({"data": fingerprint, "config": asdict(config), "format": CACHE_FORMAT})
    return "evaluator-" + hashlib.sha256(text.encode()).hexdigest()[:40]


def load_or_train_evaluator(
    dataset: Dataset,
    *,
    cache: EvaluatorCache | None,
    device: torch.device,
    epochs: int | None = None,
    seed: int = 0,
    fingerprint: str | None = None,
    announce: Callable[[str, str], None] | None = None,
) -> Evaluator:
    """The cached evaluator for this dataset and config, else a freshly trained (and cached) one.

    ``epochs`` None picks ``default_epochs`` for the dataset's size. Touches no global RNG state.
    ``announce(code, message)`` hears when a training starts and ends.
    """
    if dataset.labels is None or dataset.is_points:
        raise ValueError(
            f"an evaluator classifier needs labelled images; dataset {dataset.name!r} has "
            f"{'points' if dataset.is_points else 'no labels'}"
        )
    fingerprint = fingerprint or dataset_fingerprint(dataset)
    train_index, _ = holdout_split(len(dataset), seed)
    config = EvaluatorConfig(epochs=epochs or default_epochs(len(train_index)), seed=seed)
    key = cache_key(fingerprint, config)
    cached = cache.get(key) if cache is not None else None
    if cached is not None:
        evaluator = _deserialise(cached, dataset, config, fingerprint, device)
        if evaluator is not None:
            return evaluator
    say = announce or (lambda code, message: None)
    say(
        EVALUATOR_TRAINING_STARTED,
        f"training the evaluator classifier on {len(train_index)} images of '{dataset.name}' "
        f"({config.epochs} epochs); it is kept for every later run on this data",
    )
    started = time.monotonic()
    evaluator = train_evaluator(dataset, config, fingerprint=fingerprint, device=device)
    if cache is not None:
        cache.put(key, _serialise(evaluator, dataset))
    say(
        EVALUATOR_TRAINING_FINISHED,
        f"evaluator classifier trained in {time.monotonic() - started:.1f} s: held-out "
        f"accuracy {evaluator.accuracy:.3f}",
    )
    return evaluator


def train_evaluator(
    dataset: Dataset, config: EvaluatorConfig, *, fingerprint: str, device: torch.device
) -> Evaluator:
    """Adam with a linearly decaying learning rate on the train split; accuracy on the held-out."""
    assert dataset.labels is not None
    train_index, held_out_index = holdout_split(len(dataset), config.seed, config.holdout_fraction)
    net = _new_net(dataset, config).to(device).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    steps = config.epochs * math.ceil(len(train_index) / config.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1 - step / steps)
    shuffle = torch.Generator().manual_seed(config.seed + 1)
    images, labels = dataset.data.to(device), dataset.labels.to(device)
    for _ in range(config.epochs):
        order = train_index[torch.randperm(len(train_index), generator=shuffle)]
        for batch in order.to(device).split(config.batch_size):
            x = to_model_range(images[batch])
            loss = F.cross_entropy(net(x), labels[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
    evaluator = Evaluator(net, accuracy=None, config=config, fingerprint=fingerprint, device=device)
    predictions = evaluator.predict(dataset.batch(held_out_index)[0])
    evaluator.accuracy = (predictions.cpu() == dataset.labels[held_out_index]).float().mean().item()
    return evaluator


def random_feature_evaluator(dataset: Dataset, *, seed: int, device: torch.device) -> Evaluator:
    """For unlabelled images: a seeded random EvaluatorNet whose BatchNorm statistics are
    calibrated on the real data, so its features are well scaled. No accuracy, no classes."""
    config = EvaluatorConfig(epochs=0, seed=seed)
    net = _new_net(dataset, config).to(device)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration batches
    net.train()
    index = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:4096]
    with torch.no_grad():
        for chunk in index.split(FEATURE_BATCH):
            net(dataset.batch(chunk)[0].to(device))
    return Evaluator(net, accuracy=None, config=config, fingerprint="", device=device)


def _new_net(dataset: Dataset, config: EvaluatorConfig) -> EvaluatorNet:
    channels, image_size = dataset.sample_shape[0], max(dataset.sample_shape[1:])
    with torch.random.fork_rng(devices=[]):  # seeded init without moving the caller's RNG
        torch.manual_seed(config.seed)
        return EvaluatorNet(channels, image_size, dataset.num_classes, config.width)


def _serialise(evaluator: Evaluator, dataset: Dataset) -> bytes:
    meta = {
        "format": CACHE_FORMAT,
        "accuracy": evaluator.accuracy,
        "fingerprint": evaluator.fingerprint,
        "config": asdict(evaluator.config),
        "sample_shape": list(dataset.sample_shape),
        "num_classes": dataset.num_classes,
    }
    state = {name: t.detach().cpu().contiguous() for name, t in evaluator.net.state_dict().items()}
    return safetensors.torch.save(state, metadata={"meta": json.dumps(meta)})


def _deserialise(
    data: bytes, dataset: Dataset, config: EvaluatorConfig, fingerprint: str, device: torch.device
) -> Evaluator | None:
    """The cached evaluator, or None when the entry is unreadable or for other data/config."""
    try:
        meta = json.loads(_safetensors_metadata(data)["meta"])
        state = safetensors.torch.load(data)
    except (ValueError, KeyError, struct.error, safetensors.SafetensorError):
        return None
    if meta.get("fingerprint") != fingerprint or meta.get("config") != asdict(config):
        return None
    net = _new_net(dataset, config)
    try:
        net.load_state_dict(state)
    except RuntimeError:
        return None
    return Evaluator(
        net,
        accuracy=meta["accuracy"],
        config=config,
        fingerprint=fingerprint,
        device=device,
        from_cache=True,
    )


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors blob: an 8-byte little-endian length, then JSON."""
    (header_length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_length])
    return header.get("__metadata__", {})
