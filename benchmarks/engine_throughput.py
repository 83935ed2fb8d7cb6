"""Images/s of gan_engine's Trainer against a plain hand-written PyTorch loop.

Same DCGAN networks (built by gan_engine.nets), batch size, optimizer and Fashion-MNIST data; the
plain loop is the structure of PyTorch's DCGAN example (one fake batch reused for the G step). Ours
runs with per-step metrics, EMA, sample grids and checkpoints written to a folder (evaluation is
off: it costs a fixed time per eval, reported by the evaluation benchmarks). The two alternate
``--rounds`` times so that machine noise hits both alike; the medians are compared.

The plain loop stays in float32, as a user would write it; ours runs with the spec's
``--precision`` (default ``auto``: bf16 autocast and channels-last where the hardware has bf16
units, on this CPU's AMX as on CUDA) and, with ``--compile``, ``training.compile``.

    GANFORGE_DATA_DIR=../shared/datasets python benchmarks/engine_throughput.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gan_engine.data import Dataset
from gan_engine.nets import build_discriminator, build_generator
from gan_engine.run import load_training_data
from gan_engine.run_folder import RunFolder
from gan_engine.spec import Spec, parse_spec
from gan_engine.trainer import Trainer, pick_device


def benchmark_spec(
    steps: int, batch_size: int, width: int, precision: str = "auto", compile: bool = False
) -> Spec:
    return parse_spec(
        {
            "preset": "dcgan",
            "dataset": {"builtin": "fashion-mnist"},
            "model": {"width": width, "latent_dim": 100, "image_size": 32},
            "training": {"steps": steps, "batch_size": batch_size, "ema_decay": 0.999,
                         "mixed_precision": precision, "compile": compile},
            "monitor": {"log_every": 10, "sample_every": steps, "checkpoint_every": steps,
                        "eval_every": 10 * steps},
        }
    )  # fmt: skip


def plain_loop(spec: Spec, dataset: Dataset, device: torch.device) -> float:
    """Images/s of the textbook loop, written the way the PyTorch DCGAN example writes it."""
    torch.manual_seed(0)
    shape, batch = dataset.sample_shape, spec.training.batch_size
    G = build_generator(spec.model, sample_shape=shape, num_classes=0).to(device)
    D = build_discriminator(spec.model, sample_shape=shape, num_classes=0).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    data = dataset.data.to(device)
    ones, zeros = torch.ones(batch, device=device), torch.zeros(batch, device=device)
    started = time.perf_counter()
    for _ in range(spec.training.steps):
        real = data[torch.randint(len(data), (batch,), device=device)].float() / 127.5 - 1
        fake = G(torch.randn(batch, spec.model.latent_dim, device=device), None)
        d_loss = F.binary_cross_entropy_with_logits(D(real, None).logits, ones)
        d_loss = d_loss + F.binary_cross_entropy_with_logits(D(fake.detach(), None).logits, zeros)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = F.binary_cross_entropy_with_logits(D(fake, None).logits, ones)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    float(g_loss.detach())  # wait for queued device work
    return spec.training.steps * batch / (time.perf_counter() - started)


def our_trainer(spec: Spec, dataset: Dataset, device: torch.device) -> float:
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(spec, dataset, callbacks=[RunFolder(Path(folder))], device=device)
        started = time.perf_counter()
        trainer.fit()
        return spec.training.steps * spec.training.batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--precision", choices=["auto", "off", "bf16"], default="auto")
    parser.add_argument("--compile", action="store_true", help="training.compile for ours")
    args = parser.parse_args()
    spec = benchmark_spec(args.steps, args.batch_size, args.width, args.precision, args.compile)
    device = pick_device("auto")
    spec, dataset = load_training_data(spec)
    name = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    setup = f"DCGAN width {args.width}, 32x32 Fashion-MNIST, batch {args.batch_size}"
    ours_is = f"ours: mixed_precision {args.precision}" + (", compiled" if args.compile else "")
    print(f"device: {name}; {setup}, {args.steps} steps x {args.rounds} rounds; {ours_is}")
    warm_up = benchmark_spec(5, args.batch_size, args.width, args.precision, args.compile)
    our_trainer(warm_up, dataset, device)
    plain, ours = [], []
    for round_ in range(args.rounds):
        plain.append(plain_loop(spec, dataset, device))
        ours.append(our_trainer(spec, dataset, device))
        print(f"round {round_ + 1}: plain {plain[-1]:.1f} img/s, ours {ours[-1]:.1f} img/s")
    plain_median, ours_median = statistics.median(plain), statistics.median(ours)
    print(f"median: plain {plain_median:.1f} img/s, ours {ours_median:.1f} img/s")
    print(f"ratio ours/plain: {ours_median / plain_median:.2f}")


if __name__ == "__main__":
    main()
