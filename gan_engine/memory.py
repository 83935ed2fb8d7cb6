"""How much memory a run needs to train, estimated before any of it is allocated.

G and D are built on PyTorch's ``meta`` device (shapes only, no storage) and run once on a meta
batch, counting every layer's output: what autograd keeps for the backward pass. The estimate is

    weights, gradients and Adam's two moments of G and D, plus the EMA copy of G
  + 2 x the larger of the two steps' kept activations (the backward pass needs about as much again)
  + the training images, as uint8

in float32. The D step keeps D's activations on the real and on the fake batch (twice more under a
gradient penalty, whose double backward keeps the graph of the gradient); the G step keeps G's and
D's activations on one batch. Real runs measured by ``benchmarks/memory_estimate.py`` come within
the factor the README states; the point is to refuse, before training, what cannot fit at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from gan_engine.nets import build_discriminator, build_generator
from gan_engine.spec import ModelSpec, Spec

FLOAT_BYTES = 4
OPTIMIZER_COPIES = 4  # the weights, their gradients and Adam's two moments


@dataclass(frozen=True)
class MemoryEstimate:
    parameter_bytes: int  # weights, gradients, optimizer state and the EMA generator
    activation_bytes: int  # at training.batch_size
    data_bytes: int
    batch_size: int

    @property
    def total_bytes(self) -> int:
        return self.parameter_bytes + self.activation_bytes + self.data_bytes

    def largest_batch_within(self, budget_bytes: int) -> int:
        """The largest batch size whose estimate fits ``budget_bytes`` (0: none does)."""
        per_sample = self.activation_bytes / self.batch_size
        room = budget_bytes - self.parameter_bytes - self.data_bytes
        return max(0, math.floor(room / per_sample)) if per_sample else self.batch_size


def estimate_training_memory(
    spec: Spec,
    *,
    sample_shape: tuple[int, ...],
    num_classes: int,
    num_samples: int,
    mapped: bool = False,
) -> MemoryEstimate:
    """The estimate for ``spec`` on ``num_samples`` samples of ``sample_shape`` (C, H, W or 2);
    ``mapped`` data (a memory-mapped pack, read batch by batch) holds none of them in memory.

    Remembered for the last few hundred distinct runs: a service sees the same few recipes over
    and over, and building the networks, even on the meta device, takes milliseconds."""
    penalised = bool(spec.loss.gradient_penalty or spec.loss.r1)
    return _estimate(
        spec.model.model_dump_json(),
        spec.training.batch_size,
        spec.training.ema_decay > 0,
        penalised,
        tuple(sample_shape),
        num_classes,
        0 if mapped else num_samples,
    )


@lru_cache(maxsize=512)
def _estimate(
    model_json: str,
    batch: int,
    ema: bool,
    penalised: bool,
    sample_shape: tuple[int, ...],
    num_classes: int,
    num_samples: int,
) -> MemoryEstimate:
    model = ModelSpec.model_validate_json(model_json)
    classes = num_classes if model.conditioning != "none" else 0
    with torch.device("meta"):
        generator = build_generator(model, sample_shape=sample_shape, num_classes=classes)
        discriminator = build_discriminator(model, sample_shape=sample_shape, num_classes=classes)
        labels = torch.zeros(batch, dtype=torch.int64) if classes else None
        g_kept = _kept_elements(generator, torch.empty(batch, model.latent_dim), labels)
        d_kept = _kept_elements(discriminator, torch.empty(batch, *sample_shape), labels)
    d_step = 2 * d_kept * (2 if penalised else 1)
    g_step = g_kept + d_kept
    g_params, d_params = _parameters(generator), _parameters(discriminator)
    return MemoryEstimate(
        parameter_bytes=FLOAT_BYTES
        * (OPTIMIZER_COPIES * (g_params + d_params) + (g_params if ema else 0)),
        activation_bytes=FLOAT_BYTES * 2 * max(d_step, g_step),
        data_bytes=num_samples * math.prod(sample_shape) * (1 if len(sample_shape) == 3 else 4),
        batch_size=batch,
    )


def _parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers())


def _kept_elements(module: nn.Module, *inputs: torch.Tensor | None) -> int:
    """Elements of every leaf layer's output in one forward pass (meta tensors: nothing runs)."""
    kept = 0

    def count(_: nn.Module, __: object, output: object) -> None:
        nonlocal kept
        tensors = output if isinstance(output, tuple | list) else (output,)
        kept += sum(t.numel() for t in tensors if isinstance(t, torch.Tensor))

    leaves = [m for m in module.modules() if not any(True for _ in m.children())]
    handles = [leaf.register_forward_hook(count) for leaf in leaves]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return kept


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover
