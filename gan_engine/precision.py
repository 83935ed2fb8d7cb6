"""Mixed precision: where bf16 autocast runs, and in which memory layout.

``training.mixed_precision``: ``off`` is float32 everywhere; ``bf16`` is bf16 autocast on any
device; ``auto`` is bf16 autocast where the hardware runs it fast — CUDA with bf16 support, and
CPUs with AMX or AVX-512 bf16 units — for the convolutional architectures (the 2-D ``mlp`` nets
are too small to gain, and their point clouds need float32's resolution). Weights, optimizer
state and losses stay float32; autocast computes the convolutions and matrix products in bf16.

Under bf16, convolutional networks also use the channels-last layout, which oneDNN (CPU) and
cuDNN (tensor cores) run faster; measured in ``benchmarks/engine_throughput.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import cache
from typing import Any, Literal

import torch

ContextFactory = Callable[[], contextlib.AbstractContextManager[Any]]
Precision = Literal["auto", "off", "bf16"]
CONV_ARCHITECTURES = ("dcgan", "resnet", "unet")


@cache
def fast_bf16(device_type: str) -> bool:
    """Whether ``device_type`` has hardware bf16 units (not software emulation)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    return False


def uses_bf16(choice: str, device: torch.device, architecture: str) -> bool:
    if choice == "bf16":
        return True
    if choice == "auto":
        return architecture in CONV_ARCHITECTURES and fast_bf16(device.type)
    return False


def autocast(device: torch.device, bf16: bool) -> ContextFactory:
    """A factory of the context each forward pass runs in."""
    if not bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def memory_format(architecture: str, bf16: bool) -> torch.memory_format:
    if bf16 and architecture in CONV_ARCHITECTURES:
        return torch.channels_last
    return torch.contiguous_format
