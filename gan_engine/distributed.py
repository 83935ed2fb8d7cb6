"""One job on several devices: torchrun's ranks, the process group, DDP wrapping.

A run with ``training.devices`` N > 1 is N processes started by ``torch.distributed.run``
(torchrun, ``--standalone``); each finds its rank in the environment torchrun sets and joins the
group here (NCCL on CUDA, gloo on CPU). Every rank draws the GLOBAL batch's random numbers from
the same seeded generators and keeps its contiguous slice (``World.share``), and DDP averages the
gradients, so N ranks take the update one process takes at the same global batch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

# rank 0 evaluates and exports while the others wait in the next step's collective
COLLECTIVE_TIMEOUT = timedelta(hours=2)
LAUNCHER_POLL_S = 1.0
ORPHANED_EXIT_CODE = 70  # EX_SOFTWARE: the launcher died under this rank


@dataclass(frozen=True)
class World:
    """This process's place in the run: rank ``rank`` of ``size`` (1: no process group)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that reports, checkpoints and exports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def share(self, batch: Tensor) -> Tensor:
        """This rank's contiguous slice of a tensor holding the global batch along dim 0."""
        if not self.distributed:
            return batch
        per_rank = batch.shape[0] // self.size
        return batch[self.rank * per_rank : (self.rank + 1) * per_rank]

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is True on any (a collective: call it on all)."""
        if not self.distributed:
            return flag
        value = torch.tensor([float(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def from_main(self, flag: bool, device: torch.device) -> bool:
        """Rank 0's ``flag`` on every rank (a collective: call it on all)."""
        if not self.distributed:
            return flag
        value = torch.tensor([float(flag)], device=device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def average(self, value: Tensor) -> Tensor:
        """``value`` averaged over the ranks (a collective: every rank calls it alike)."""
        if not self.distributed:
            return value
        summed = value.detach().float().clone()
        dist.all_reduce(summed)
        return (summed / self.size).to(value.dtype)

    def mean(self, stats: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each statistic averaged over the ranks (a collective; the same keys on every rank)."""
        if not self.distributed or not stats:
            return stats
        names = list(stats)  # the same order on every rank: the same code made them
        flat = torch.stack([stats[name].detach().float().reshape(()) for name in names])
        dist.all_reduce(flat)
        return dict(zip(names, flat / self.size, strict=True))


SINGLE = World()


def current_world() -> World:
    """The world torchrun's environment describes (one process when it set none)."""
    return World(rank=int(os.environ.get("RANK", 0)), size=int(os.environ.get("WORLD_SIZE", 1)))


def active_world() -> World:
    """The process group this process has joined (one process when none)."""
    if not dist.is_initialized():
        return SINGLE
    return World(rank=dist.get_rank(), size=dist.get_world_size())


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or "WORLD_SIZE" in os.environ


def rank_device(choice: torch.device) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` on CUDA (a clear error when there are fewer
    visible GPUs than ranks), the CPU otherwise."""
    if choice.type != "cuda":
        return choice
    local_rank, ranks = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    visible = torch.cuda.device_count()
    if ranks > visible:
        from gan_engine.spec import SpecError  # spec imports nothing of ours; no cycle at import

        raise SpecError(
            f"{ranks} devices were asked for but only {visible} CUDA device(s) are visible",
            param="training.devices",
        )
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[World]:
    """Join torchrun's group for the run (NCCL on CUDA, gloo on CPU); outside torchrun, one
    process and no group. A rank is a process that exists for its run: leaving the block
    normally ENDS THE PROCESS with status 0 (``end_rank``), so code after the block never runs
    on a rank."""
    world = current_world()
    if not world.distributed:
        yield world
        return
    device = rank_device(device)  # NCCL binds each rank to the GPU current when it joins
    backend = "nccl" if device.type == "cuda" else "gloo"
    exit_with_launcher()
    dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    try:
        yield world
    except BaseException:
        dist.destroy_process_group()  # no barrier: the other ranks may never reach one
        raise
    # every rank has done its work before any leaves: one that tore its gloo sockets down
    # while another was still closing its own made gloo abort that one (SIGABRT) under load
    dist.barrier()
    end_rank(0)


def end_rank(status: int) -> NoReturn:
    """End this rank's process now with ``status``, skipping the interpreter's teardown.

    Freeing a gloo process group now and then blocks for ever (pytorch/pytorch#75097), and
    not only in ``destroy_process_group``: in CI a finished rank whose group had been
    destroyed hung on freeing its trainer (the DDP modules hold the group), main thread in a
    C++ destructor with the GIL held, so no Python thread could time it out. Nothing a rank
    leaves behind needs a finaliser: its files are written and closed by then, and stdio and
    logging are flushed here."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def exit_with_launcher(poll_s: float = LAUNCHER_POLL_S) -> None:
    """End this rank when the torchrun agent that started it is gone (killed with SIGKILL, it
    cannot stop its ranks): an orphaned rank would otherwise wait in a collective for the group's
    2-hour timeout, holding its device. Linux hands an orphan to another parent; that change is
    what a daemon thread watches for."""
    launcher = os.getppid()
    if launcher == 1:  # orphaned already, before it could join: its group can never form
        os._exit(ORPHANED_EXIT_CODE)

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(poll_s)
        os._exit(ORPHANED_EXIT_CODE)

    threading.Thread(target=watch, name="exit-with-launcher", daemon=True).start()


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` for the training step: DDP (gradients averaged over the ranks in backward) in a
    process group, the module itself otherwise. DDP broadcasts rank 0's parameters and buffers
    here and rank 0's buffers (BatchNorm's running statistics) at every forward."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm in ``module`` normalised with the global batch's statistics: torch's
    SyncBatchNorm on GPUs; on the CPU, where torch's refuses to run, ``GlooSyncBatchNorm``."""
    if any(p.device.type != "cpu" for p in module.parameters()):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
            layer.__class__ = GlooSyncBatchNorm  # the same parameters, buffers and state keys
    return module


class GlooSyncBatchNorm(_BatchNorm):
    """SyncBatchNorm for CPU tensors: the per-channel sums and counts, then the squared
    deviations from the global mean, all-reduced (differentiably), so every rank normalises
    with the global batch's mean and variance."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {input.dim()}-D)")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        dims, channels = [0, *range(2, input.dim())], input.shape[1]
        shape = (1, channels, *([1] * (input.dim() - 2)))
        count = torch.tensor([input.numel() / channels], dtype=input.dtype)
        totals = dist_nn.all_reduce(torch.cat([input.sum(dims), count]))
        n = totals[-1]
        mean = totals[:channels] / n
        # two passes, as BatchNorm itself computes the variance (not E[x²] - E[x]²)
        var = dist_nn.all_reduce(((input - mean.view(shape)) ** 2).sum(dims)) / n
        out = (input - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            assert self.running_mean is not None and self.running_var is not None
            assert self.num_batches_tracked is not None
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                tracked = float(self.num_batches_tracked)
                momentum = 1.0 / tracked if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * n / (n - 1), momentum)
        return out


def launch_command(nproc: int, module: str, args: Sequence[str]) -> list[str]:
    """``python -m module args`` as ``nproc`` ranks under torchrun on this machine. A fresh
    subprocess, so its caller (a Celery worker, a CLI) forks nothing itself and the ranks start
    with no CUDA initialised."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", "-m", module, *args,
    ]  # fmt: skip


def launch(nproc: int, module: str, args: Sequence[str]) -> int:
    """Run ``launch_command`` to its end; returns its exit status."""
    return subprocess.call(launch_command(nproc, module, args))
