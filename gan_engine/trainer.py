"""The training loop: n_critic discriminator steps, one generator step, EMA, callbacks.

Task 'translation' (pix2pix) runs the same loop: its D step judges (input, target) against
(input, G(input)) and its G step adds λ·L1 to the weighted adversarial term; with
``loss.adversarial`` 0 there is no D step (the L1-only baseline).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from gan_engine import distributed, regularizers
from gan_engine.augment import build_augment
from gan_engine.callbacks import Callback
from gan_engine.checkpoint import CHECKPOINT_FORMAT, CheckpointError
from gan_engine.data import Dataset, to_model_range
from gan_engine.data.builtins import fit_data, subset_index
from gan_engine.data.fit import fits_by_padding
from gan_engine.data.loader import Batches
from gan_engine.evaluation import EVALUATION_SEED, HEADLINE_METRICS
from gan_engine.evaluation.evaluator import holdout_split
from gan_engine.events import Event, Phase
from gan_engine.images import grid, png_bytes, scatter_png, to_uint8, translation_grid
from gan_engine.losses import LOSSES
from gan_engine.nets import (
    build_discriminator,
    build_generator,
    build_patch_discriminator,
    build_translator,
)
from gan_engine.precision import autocast, memory_format, uses_bf16
from gan_engine.progress import RunProgress
from gan_engine.spec import OptimizerSpec, Spec, SpecError


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite."""

    def __init__(self, step: int, values: dict[str, float]) -> None:
        bad = ", ".join(f"{k}={v}" for k, v in values.items())
        super().__init__(
            f"diverged at step {step}: {bad}. Try a lower learning rate, loss 'wgan_gp' or "
            "'hinge' with spectral norm, or mixed_precision 'off'"
        )
        self.step = step


@dataclass
class TrainResult:
    step: int
    stopped_early: bool
    summary: dict[str, float] = field(default_factory=dict)


def ema_with_warmup(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    """EMA whose decay ramps up as min(decay, (1 + n) / (10 + n)), so early averages track G."""

    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        n = float(num_averaged)
        if averaged[0].is_floating_point():  # AveragedModel groups tensors by dtype
            torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1 + n) / (10 + n)))
        else:  # BatchNorm's num_batches_tracked
            torch._foreach_copy_(averaged, current)

    return update


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise SpecError(
                "'cuda' was asked for but no CUDA device is visible", param="training.device"
            )
        return torch.device("cuda")
    return torch.device("cpu")


def build_optimizer(spec: OptimizerSpec, parameters: Iterable[Tensor]) -> torch.optim.Optimizer:
    # foreach (PyTorch's default on CUDA only): on CPU the per-parameter loop otherwise dominates
    # the step of small models such as the 2-D MLPs
    if spec.kind == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=spec.lr, foreach=True)
    return torch.optim.Adam(parameters, lr=spec.lr, betas=spec.betas, foreach=True)


class Trainer:
    def __init__(
        self,
        spec: Spec,
        dataset: Dataset,
        *,
        callbacks: Sequence[Callback] = (),
        evaluator: Any = None,  # gan_engine.evaluation.RunEvaluator, or None to skip evaluation
        diagnostics: Any = None,  # gan_engine.diagnostics.Diagnostics, or None
        device: torch.device | None = None,
        world: distributed.World | None = None,  # default: the process group joined, if any
    ) -> None:
        spec, dataset = fit_data(spec, dataset)
        self.world = world or distributed.active_world()
        self.translating = spec.task == "translation"
        if self.translating != dataset.is_paired:
            raise SpecError(
                f"task '{spec.task}' cannot train on '{dataset.name}', which is "
                + ("paired data: use task 'translation'" if dataset.is_paired else
                   "not paired: give a paired dataset (inputs and targets)"),
                param="dataset",
            )  # fmt: skip
        conditioning = spec.model.conditioning
        if conditioning != "none" and dataset.labels is None:
            raise SpecError(
                f"'{conditioning}' needs a labelled dataset, and '{dataset.name}' has no "
                "labels: use conditioning 'none' or add labels",
                param="model.conditioning",
            )
        self.progress = RunProgress(
            total_steps=spec.training.steps,
            eval_every=spec.monitor.eval_every,
            eval_samples=spec.monitor.eval_samples,
            images_per_step=spec.training.batch_size,
        )
        self.spec, self.dataset = spec, dataset
        # only rank 0 reports, checkpoints and exports
        self.callbacks: list[Callback] = (
            [self.progress, *callbacks] if self.world.is_main else [self.progress]
        )
        self.evaluator, self.diagnostics = evaluator, diagnostics
        self.device = device or pick_device(spec.training.device)
        if self.world.distributed:
            self.device = distributed.rank_device(self.device)
        self.batch_size = spec.training.batch_size // self.world.size  # this rank's share
        self.num_classes = dataset.num_classes if conditioning != "none" else 0
        torch.manual_seed(spec.training.seed)
        shape = dataset.sample_shape
        self.G: nn.Module
        self.D: nn.Module
        if self.translating:
            pair = {"input_shape": dataset.input_shape, "sample_shape": shape}
            self.G = build_translator(spec.model, **pair)  # type: ignore[arg-type]
            self.D = build_patch_discriminator(spec.model, **pair)  # type: ignore[arg-type]
        else:
            self.G = build_generator(spec.model, sample_shape=shape, num_classes=self.num_classes)
            self.D = build_discriminator(
                spec.model, sample_shape=shape, num_classes=self.num_classes
            )
        self.bf16 = uses_bf16(spec.training.mixed_precision, self.device, spec.model.architecture)
        self._layout = memory_format(spec.model.architecture, self.bf16)
        self.G.to(self.device, memory_format=self._layout)
        self.D.to(self.device, memory_format=self._layout)
        if self.world.distributed and spec.training.sync_batchnorm:
            self.G, self.D = distributed.sync_batchnorm(self.G), distributed.sync_batchnorm(self.D)
        decay = spec.training.ema_decay
        self.ema = (
            AveragedModel(self.G, multi_avg_fn=ema_with_warmup(decay), use_buffers=True)
            if decay > 0
            else None
        )
        if self.ema is not None:  # samples and exports in the layout the artifact is rebuilt in
            self.ema.module.to(memory_format=torch.contiguous_format)
        self.g_optimizer = build_optimizer(spec.optimizer.generator, self.G.parameters())
        self.d_optimizer = build_optimizer(spec.optimizer.discriminator, self.D.parameters())
        self.loss = LOSSES[spec.loss.kind]
        self.real_target = 1.0 - spec.loss.label_smoothing
        self.augment = build_augment(spec, self.device, average=self.world.average)
        self.lecam = (
            regularizers.LeCam(spec.loss.lecam, self.device, average=self.world.average)
            if spec.loss.lecam
            else None
        )
        self.batches = Batches(
            dataset,
            batch_size=spec.training.batch_size,
            seed=spec.training.seed,
            device=self.device,
            layout=self._layout,
            pool=_training_index(spec, dataset),
            rank=self.world.rank,
            world_size=self.world.size,
        )
        self.trains_discriminator = not self.translating or spec.loss.adversarial > 0
        self.step = 0
        self.final_metrics: dict[str, float] = {}
        self._real_features: Tensor | None = None
        self._grid_z = (
            None
            if self.translating
            else torch.randn(
                self._grid_size(),
                spec.model.latent_dim,
                generator=torch.Generator().manual_seed(0),
            ).to(self.device)
        )
        self._autocast = autocast(self.device, self.bf16)
        # the training forward passes; the modules themselves hold the state (and get exported).
        # g_forward / d_forward: the network whose loss is being minimised (DDP across ranks);
        # g_plain / d_plain: the other network's forward, whose gradients are not used
        compiled = spec.training.compile
        maybe_compiled = lambda m: torch.compile(m) if compiled else m  # noqa: E731
        self.g_plain: nn.Module = maybe_compiled(self.G)
        self.d_plain: nn.Module = maybe_compiled(self.D)
        g_ddp = distributed.wrap(self.G, self.device)
        d_ddp = distributed.wrap(self.D, self.device)
        self.g_forward: nn.Module = self.g_plain if g_ddp is self.G else maybe_compiled(g_ddp)
        self.d_forward: nn.Module = self.d_plain if d_ddp is self.D else maybe_compiled(d_ddp)

    # --- one training step -------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train until ``training.steps``; continue from ``self.step`` after load_state_dict."""
        training, monitor = self.spec.training, self.spec.monitor
        started = window_start = time.monotonic()
        window_steps, window_paused = 0, 0.0  # images/s counts training, not evaluations
        self.progress.start(self.step, evaluates=self.evaluator is not None)
        self.enter_phase(Phase.TRAINING)
        if self.step == 0 and self.dataset.fitted_from is not None:
            self._emit_event("info", "data_fitted", self._fitting_note())
        while self.step < training.steps:
            measure = (self.step + 1) % monitor.log_every == 0 or self.step + 1 == training.steps
            self._apply_lr_schedule()
            d_stats: dict[str, Tensor] = {}
            for _ in range(self.spec.optimizer.n_critic if self.trains_discriminator else 0):
                d_stats = self.discriminator_step(measure)
            g_stats = self.generator_step(measure)
            if self.ema is not None:
                self.ema.update_parameters(self.G)
            self.step += 1
            window_steps += 1
            self._raise_if_diverged(d_stats.get("d_loss", torch.zeros(())), g_stats["g_loss"])
            if measure:
                stats = self.world.mean({**d_stats, **g_stats})
                stats.update(self.augment.metrics())  # the same on every rank
                elapsed = time.monotonic() - window_start - window_paused
                images = window_steps * training.batch_size * self.spec.optimizer.n_critic
                self._emit_step(stats, images / max(elapsed, 1e-9))
                window_start, window_steps, window_paused = time.monotonic(), 0, 0.0
            paused_at = time.monotonic()
            self._periodic_callbacks()
            window_paused += time.monotonic() - paused_at
            out_of_time = self.world.is_main and time.monotonic() - started > training.max_runtime_s
            if out_of_time:
                self._emit_event(
                    "warning",
                    "max_runtime",
                    f"stopped: max_runtime_s "
                    f"{training.max_runtime_s:g} reached at step {self.step}",
                )
            stop = out_of_time or any(cb.should_stop(self.step) for cb in self.callbacks)
            if self.world.from_main(stop, self.device):  # no rank left waiting in a collective
                return TrainResult(self.step, stopped_early=True)
        summary = {**self.final_metrics, **_floats(self.augment.metrics())}  # + ADA's final p
        return TrainResult(self.step, stopped_early=False, summary=summary)

    def discriminator_step(self, measure: bool) -> dict[str, Tensor]:
        if self.translating:
            return self.translation_discriminator_step(measure)
        real, labels = self._real_batch()
        z = self._latent(real.shape[0])
        with torch.no_grad(), self._autocast():
            fake = self.g_plain(z, labels)  # conditional D: real and fake of the same classes
        real, fake = self._instance_noise(real), self._instance_noise(fake)
        loss_spec, pack = self.spec.loss, self.spec.model.pack
        with self._autocast():
            out_real, out_fake = self._judge(real, labels), self._judge(fake, labels)
            self.augment.observe_real(out_real.logits)
            d_loss = self.loss.discriminator(out_real.logits, out_fake.logits, self.real_target)
            stats = {"d_adv_loss": d_loss.detach()}
            if self.lecam is not None:
                lecam = self.lecam(out_real.logits, out_fake.logits)
                d_loss, stats["lecam"] = d_loss + lecam, lecam.detach()
            if out_real.class_logits is not None:
                class_loss = F.cross_entropy(out_real.class_logits, labels) + F.cross_entropy(
                    out_fake.class_logits, labels
                )
                d_loss = d_loss + loss_spec.acgan_weight * class_loss
                stats["d_class_loss"] = class_loss.detach()
            critic = self._critic(labels)
            if loss_spec.gradient_penalty:
                gp = regularizers.gradient_penalty(
                    critic, real, fake, weight=loss_spec.gradient_penalty, pack=pack,
                    world=self.world,
                )  # fmt: skip
                d_loss, stats["gp"] = d_loss + gp, gp.detach()
            if loss_spec.r1:
                r1 = regularizers.r1_penalty(critic, real, gamma=loss_spec.r1, pack=pack)
                d_loss, stats["r1"] = d_loss + r1, r1.detach()
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        if measure:
            stats["d_grad_norm"] = _grad_norm(self.D)
        self.d_optimizer.step()
        if loss_spec.weight_clip:
            regularizers.clip_weights(self.D, loss_spec.weight_clip)
        self._real_features = out_real.features.detach()
        real_logits, fake_logits = (
            out_real.logits.detach().float(),
            out_fake.logits.detach().float(),
        )
        boundary = self.loss.decision_boundary
        if measure and boundary is not None:  # ADA's overfitting heuristic r_t, for diagnostics
            stats["d_real_sign"] = (real_logits - boundary).sign().mean()
        return {
            **stats,
            "d_loss": d_loss.detach(),
            "d_real": real_logits.mean(),
            "d_fake": fake_logits.mean(),
            "p_real": real_logits.sigmoid().mean(),
            "p_fake": fake_logits.sigmoid().mean(),
        }

    def generator_step(self, measure: bool) -> dict[str, Tensor]:
        if self.translating:
            return self.translation_generator_step(measure)
        labels = self._random_labels(self.batch_size)
        self.D.requires_grad_(False)
        with self._autocast():
            fake = self.g_forward(self._latent(self.batch_size), labels)
            out = self._judge(self._instance_noise(fake), labels, through=self.d_plain)
            g_loss = self.loss.generator(out.logits)
            stats = {"g_adv_loss": g_loss.detach()}
            if out.class_logits is not None:
                class_loss = F.cross_entropy(out.class_logits, labels)
                g_loss = g_loss + self.spec.loss.acgan_weight * class_loss
                stats["g_class_loss"] = class_loss.detach()
            if self.spec.loss.feature_matching and self._real_features is not None:
                matching = regularizers.feature_matching(self._real_features, out.features)
                g_loss = g_loss + self.spec.loss.feature_matching * matching
                stats["feature_matching"] = matching.detach()
        self.g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        self.D.requires_grad_(True)
        if measure:
            stats["g_grad_norm"] = _grad_norm(self.G)
        self.g_optimizer.step()
        return {**stats, "g_loss": g_loss.detach()}

    def translation_discriminator_step(self, measure: bool) -> dict[str, Tensor]:
        """pix2pix's D: (input, target) real, (input, G(input)) fake, judged patch by patch."""
        inputs, real = self._paired_batch()
        with torch.no_grad(), self._autocast():
            fake = self.g_plain(inputs)
        real, fake = self._instance_noise(real), self._instance_noise(fake)
        loss_spec = self.spec.loss
        with self._autocast():
            out_real, out_fake = self.d_forward(inputs, real), self.d_forward(inputs, fake)
            d_loss = self.loss.discriminator(out_real, out_fake, self.real_target)
            stats = {"d_adv_loss": d_loss.detach()}
            critic = lambda x: self.d_forward(inputs, x)  # noqa: E731
            if loss_spec.gradient_penalty:
                gp = regularizers.gradient_penalty(
                    critic, real, fake, weight=loss_spec.gradient_penalty, world=self.world
                )
                d_loss, stats["gp"] = d_loss + gp, gp.detach()
            if loss_spec.r1:
                r1 = regularizers.r1_penalty(critic, real, gamma=loss_spec.r1)
                d_loss, stats["r1"] = d_loss + r1, r1.detach()
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        if measure:
            stats["d_grad_norm"] = _grad_norm(self.D)
        self.d_optimizer.step()
        if loss_spec.weight_clip:
            regularizers.clip_weights(self.D, loss_spec.weight_clip)
        real_logits, fake_logits = out_real.detach().float(), out_fake.detach().float()
        return {
            **stats,
            "d_loss": d_loss.detach(),
            "d_real": real_logits.mean(),
            "d_fake": fake_logits.mean(),
            "p_real": real_logits.sigmoid().mean(),
            "p_fake": fake_logits.sigmoid().mean(),
        }

    def translation_generator_step(self, measure: bool) -> dict[str, Tensor]:
        """pix2pix's G: loss.adversarial · adversarial loss + loss.l1 · |G(input) - target|."""
        inputs, target = self._paired_batch()
        loss_spec = self.spec.loss
        with self._autocast():
            fake = self.g_forward(inputs)
            l1 = (fake.float() - target).abs().mean()
            g_loss = (loss_spec.l1 or 0.0) * l1
            stats = {"l1": l1.detach()}
            if self.trains_discriminator:
                self.D.requires_grad_(False)
                judged = self.d_plain(inputs, self._instance_noise(fake))
                adversarial = self.loss.generator(judged)
                g_loss = g_loss + loss_spec.adversarial * adversarial
                stats["g_adv_loss"] = adversarial.detach()
        self.g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        self.D.requires_grad_(True)
        if measure:
            stats["g_grad_norm"] = _grad_norm(self.G)
        self.g_optimizer.step()
        return {**stats, "g_loss": g_loss.detach()}

    # --- sampling --------------------------------------------------------------------------------

    @property
    def sampling_generator(self) -> nn.Module:
        """The EMA generator when there is one: the network that gets exported."""
        return self.ema.module if self.ema is not None else self.G

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[nn.Module]:
        generator = self.sampling_generator
        was_training = generator.training
        generator.eval()
        try:
            with torch.no_grad():
                yield generator
        finally:
            generator.train(was_training)

    def translate(self, inputs: Tensor) -> Tensor:
        """Translations (model range) of uint8 inputs by the exported generator in eval mode."""
        with self._eval_mode() as generator:
            return generator(to_model_range(inputs.to(self.device)))

    def generate(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """Samples from the exported generator in eval mode; touches no RNG."""
        with self._eval_mode() as generator:
            return generator(z.to(self.device), None if labels is None else labels.to(self.device))

    def sample_grid_png(self) -> bytes:
        if self.translating:
            index = holdout_split(len(self.dataset), EVALUATION_SEED)[1]
            shown = self.dataset.gathered(index[: self.spec.monitor.samples_per_class])
            assert shown.inputs is not None
            outputs = to_uint8(self.translate(shown.inputs))
            return png_bytes(translation_grid(shown.inputs, outputs, shown.data))
        if self.dataset.is_points:
            labels = self._grid_labels()
            points = self.generate(self._grid_z, labels).float().cpu().numpy()
            reference = self.dataset.data[:: max(1, len(self.dataset) // 2000)].numpy()
            shown_labels = None if labels is None else labels.cpu().numpy()
            return scatter_png(points, shown_labels, reference=reference)
        images = to_uint8(self.generate(self._grid_z, self._grid_labels()))
        return png_bytes(grid(images, columns=self._grid_columns()))

    def enter_phase(self, phase: Phase) -> None:
        """Tell the callbacks the run now does ``phase`` (the caller says ``EXPORTING``)."""
        for callback in self.callbacks:
            callback.on_phase(phase, self.step)

    def _announced_evaluation(self) -> dict[str, float]:
        samples = self.spec.monitor.eval_samples
        self._emit_event(
            "info", "evaluation_started", f"evaluating {samples} samples at step {self.step}"
        )
        started = time.monotonic()
        metrics = self.evaluate()
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k in HEADLINE_METRICS)
        self._emit_event(
            "info",
            "evaluation_finished",
            f"evaluation at step {self.step} took {time.monotonic() - started:.1f} s"
            + (f": {shown}" if shown else ""),
        )
        return metrics

    def evaluate(self) -> dict[str, float]:
        if self.translating:
            return self.evaluator.evaluate(self.translate, announce=self._announce)
        seed_rng = torch.Generator().manual_seed(self.spec.training.seed + 1)

        def sample(n: int, labels: Tensor | None) -> Tensor:
            z = torch.randn(n, self.spec.model.latent_dim, generator=seed_rng)
            chunks = [
                self.generate(z[i : i + 500], None if labels is None else labels[i : i + 500])
                for i in range(0, n, 500)
            ]
            return torch.cat(chunks).float()

        return self.evaluator.evaluate(sample, announce=self._announce)

    def _announce(self, code: str, message: str) -> None:
        self._emit_event("info", code, message)

    # --- state -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "spec": json.dumps(self.spec.to_dict()),
            "generator": self.G.state_dict(),
            "discriminator": self.D.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "g_optimizer": self.g_optimizer.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "data": self.batches.state_dict(),
            },
            "augment": self.augment.state_dict(),
            "lecam": None if self.lecam is None else self.lecam.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.G.load_state_dict(state["generator"])
            self.D.load_state_dict(state["discriminator"])
            if self.ema is not None and state["ema"] is not None:
                self.ema.load_state_dict(state["ema"])
            self.g_optimizer.load_state_dict(state["g_optimizer"])
            self.d_optimizer.load_state_dict(state["d_optimizer"])
        except (KeyError, RuntimeError, ValueError) as error:
            raise CheckpointError(
                f"checkpoint does not match this spec's networks: {error}"
            ) from error
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.augment.load_state_dict(state.get("augment"))
        if self.lecam is not None:
            self.lecam.load_state_dict(state.get("lecam"))
        self.step = int(state["step"])
        data = state["rng"]["data"]
        # a checkpoint from before the loader holds a generator state: go on with the batch
        # that follows as many as the run had drawn
        self.batches.load_state_dict(
            data if isinstance(data, dict) else {"drawn": self._batches_drawn()}
        )

    # --- helpers ---------------------------------------------------------------------------------

    def _apply_lr_schedule(self) -> None:
        """A function of the step alone, so a resumed run needs no scheduler state."""
        optimizers = self.spec.optimizer
        if optimizers.lr_schedule == "constant":
            return
        remaining = 1.0 - self.step / self.spec.training.steps
        for optimizer, spec in ((self.g_optimizer, optimizers.generator),
                                (self.d_optimizer, optimizers.discriminator)):  # fmt: skip
            for group in optimizer.param_groups:
                group["lr"] = spec.lr * remaining

    def _real_batch(self) -> tuple[Tensor, Tensor | None]:
        x, labels = self.batches.real()
        return x, labels if self.num_classes else None

    def _paired_batch(self) -> tuple[Tensor, Tensor]:
        """(inputs, targets) in [-1, 1] of a batch drawn from the training pairs."""
        return self.batches.paired()

    def _batches_drawn(self) -> int:
        """Real batches drawn in ``self.step`` steps: one per D step, and one per G step of
        translation."""
        d_steps = self.spec.optimizer.n_critic if self.trains_discriminator else 0
        return self.step * (d_steps + (1 if self.translating else 0))

    # random draws: every rank draws the global batch's and keeps its share (distributed.World)

    def _latent(self, n: int) -> Tensor:
        size = (n * self.world.size, self.spec.model.latent_dim)
        return self.world.share(torch.randn(size, device=self.device))

    def _random_labels(self, n: int) -> Tensor | None:
        if not self.num_classes:
            return None
        drawn = torch.randint(self.num_classes, (n * self.world.size,), device=self.device)
        return self.world.share(drawn)

    def _instance_noise(self, x: Tensor) -> Tensor:
        std = regularizers.instance_noise_std(
            self.spec.loss.instance_noise, self.step, self.spec.training.steps
        )
        if std <= 0:
            return x
        size = (x.shape[0] * self.world.size, *x.shape[1:])
        noise = self.world.share(torch.randn(size, device=x.device, dtype=x.dtype))
        return x + std * noise

    def _judge(self, x: Tensor, labels: Tensor | None, through: nn.Module | None = None) -> Any:
        """D's verdict on ``x`` as D sees it: augmented (augment.kind), every time; ``through``
        another forward of D (G's step goes through D's plain module, not its DDP wrapper)."""
        return (self.d_forward if through is None else through)(self.augment(x), labels)

    def _critic(self, labels: Tensor | None) -> Callable[[Tensor], Tensor]:
        return lambda x: self._judge(x, labels).logits

    def _fitting_note(self) -> str:
        height, width = self.dataset.fitted_from or (0, 0)
        size = self.spec.model.image_size
        how = "padded" if height == width and fits_by_padding(height, size or 0) else "resized"
        return (
            f"the dataset's {height}×{width} images are {how} to {size}×{size} "
            "(model.image_size): samples come out at that size"
        )

    def _grid_columns(self) -> int:
        return self.spec.monitor.samples_per_class

    def _grid_size(self) -> int:
        if self.dataset.is_points:
            return 1000
        rows = self.num_classes or self.spec.monitor.samples_per_class
        return rows * self._grid_columns()

    def _grid_labels(self) -> Tensor | None:
        if not self.num_classes:
            return None
        if self.dataset.is_points:
            return torch.arange(self._grid_size()) % self.num_classes
        return torch.arange(self.num_classes).repeat_interleave(self._grid_columns())

    def _raise_if_diverged(self, d_loss: Tensor, g_loss: Tensor) -> None:
        # agreed by all ranks, so none is left waiting in a collective for one that raised
        if self.world.any(not torch.isfinite(d_loss + g_loss), self.device):
            values = {"d_loss": float(d_loss), "g_loss": float(g_loss)}
            self._emit_event("error", "diverged", str(TrainingDiverged(self.step, values)))
            raise TrainingDiverged(self.step, values)

    def _emit_step(self, stats: dict[str, Tensor], images_per_s: float) -> None:
        metrics = _floats(stats)
        metrics["images_per_s"] = images_per_s
        for callback in self.callbacks:
            callback.on_step(self.step, metrics)
        if self.diagnostics is not None:
            for event in self.diagnostics.observe_step(self.step, metrics):
                self._send_event(event)

    def _emit_event(self, level: str, code: str, message: str) -> None:
        self._send_event(Event(self.step, level, code, message))  # type: ignore[arg-type]

    def _send_event(self, event: Event) -> None:
        for callback in self.callbacks:
            callback.on_event(event)

    def _periodic_callbacks(self) -> None:
        if not self.world.is_main:  # nothing here is a collective: the others train on
            return
        monitor, last = self.spec.monitor, self.step == self.spec.training.steps
        if self.step % monitor.sample_every == 0 or last:
            png = self.sample_grid_png()
            for callback in self.callbacks:
                callback.on_sample(self.step, png)
        if self.evaluator is not None and (self.step % monitor.eval_every == 0 or last):
            self.enter_phase(Phase.EVALUATING)
            metrics = self._announced_evaluation()
            if last:
                self.final_metrics = metrics
            for callback in self.callbacks:
                callback.on_eval(self.step, metrics)
            if self.diagnostics is not None:
                for event in self.diagnostics.observe_eval(self.step, metrics):
                    self._send_event(event)
            if not last:
                self.enter_phase(Phase.TRAINING)
        if self.step % monitor.checkpoint_every == 0 or last:
            state = self.state_dict()
            for callback in self.callbacks:
                callback.on_checkpoint(self.step, state)


def _training_index(spec: Spec, dataset: Dataset) -> Tensor | None:
    """The samples the run trains on, when not all of them: translation the pairs its evaluation
    does not hold out, ``dataset.subset`` its fixed subset (evaluation still sees every sample)."""
    if spec.task == "translation":
        return holdout_split(len(dataset), EVALUATION_SEED)[0]
    subset = spec.dataset.subset
    return None if subset is None else subset_index(dataset, subset.per_class, subset.seed)


def _floats(stats: dict[str, Tensor]) -> dict[str, float]:
    return {name: float(value) for name, value in stats.items()}


def _grad_norm(module: nn.Module) -> Tensor:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
