"""Diagnostics: plain-language warnings, with advice, read from a run's metric streams.

A small rule table. Each rule looks at the newest observation (and the recent history) and returns
its evidence as a phrase, or None. A rule warns once per episode: when its condition has held for
``window`` consecutive observations; it re-arms after ``rearm`` consecutive clear observations.
Step rules see the metrics logged every ``monitor.log_every`` steps, eval rules the quality metrics
of every evaluation. Thresholds depend on the loss: only the BCE losses' D outputs are
probabilities.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gan_engine.data.mixtures import MIXTURES
from gan_engine.events import Event
from gan_engine.losses import LOSSES
from gan_engine.spec import Spec

HISTORY = 100  # step observations kept for windowed checks
REFERENCE_COUNT = 20  # the first observations: each metric's early level
SMOOTHING = 5  # observations in the moving average of the oscillation check
TINY_GRADIENT = 1e-3
EXPLOSION = 50.0  # times the early level
# D's r_t = E[sign D(real)] (Karras et al. 2020), as the median of the last RT_SMOOTHING logged
# batches, above which it is taken to be memorising the reals: well above ADA's target 0.6, which
# healthy runs without augmentation exceed (docs/small-data.md has the measured levels)
OVERFITTING_RT = 0.9
RT_SMOOTHING = 20
OVERFITTING_AFTER = 0.25  # of the run's steps: every D separates reals easily at the start
# a conditional class collapsed into another: the least-recognised class's accuracy at most this,
# and this far below the level every class had reached at an earlier evaluation
CLASS_COLLAPSE_BELOW = 0.5
CLASS_COLLAPSE_DROP = 0.3
BEST: dict[str, Callable[[float, float], float]] = {  # eval metrics whose best value is kept
    "modes_captured": max, "class_coverage": max, "diversity_ratio": max, "duplicate_fraction": min,
    "lowest_class_accuracy": max,
}  # fmt: skip


@dataclass
class _Run:
    """What the rules read: the spec, the recent step metrics and each metric's early level."""

    spec: Spec
    num_classes: int
    recent: deque[dict[str, float]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    early: dict[str, list[float]] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)  # best eval value so far, per metric
    collapse_evidence_last_eval: bool = False
    step: int = 0  # of the newest observation

    def reference(self, name: str) -> float | None:
        values = self.early.get(name, [])
        return statistics.median(values) if len(values) >= REFERENCE_COUNT // 2 else None

    def series(self, name: str) -> list[float]:
        return [m[name] for m in self.recent if name in m]


Check = Callable[[_Run, dict[str, float]], str | None]


@dataclass(frozen=True)
class Rule:
    code: str
    window: int  # consecutive observations the condition must hold before warning
    rearm: int  # consecutive clear observations before it may warn again
    check: Check
    advice: Callable[[Spec], str]
    unless: str | None = None  # a more specific rule whose episode silences this one


# --- step rules -------------------------------------------------------------------------------


def _diverging(run: _Run, m: dict[str, float]) -> str | None:
    for name in ("d_loss", "g_loss", "d_grad_norm", "g_grad_norm"):
        value = m.get(name)
        if value is None:
            continue
        if not math.isfinite(value):
            return f"{name} is {value}"
        reference = run.reference(name)
        if reference is None:
            continue
        floor = 10.0 if name.endswith("grad_norm") else 1.0
        if abs(value) > EXPLOSION * max(abs(reference), floor):
            return f"{name} reached {value:.3g}, against {reference:.3g} early in the run"
    return None


def _d_confident(run: _Run, m: dict[str, float]) -> str | None:
    """D separates real from fake with confidence, in the units of this loss; "" when the loss
    has no such notion (Wasserstein critics)."""
    kind, target = run.spec.loss.kind, 1.0 - run.spec.loss.label_smoothing
    if LOSSES[kind].bce:
        p_real, p_fake = m.get("p_real"), m.get("p_fake")
        if p_real is None or p_fake is None or not (p_real >= 0.9 * target and p_fake <= 0.1):
            return None
        return f"D(real) {p_real:.3f}, D(fake) {p_fake:.3f}"
    d_real, d_fake = m.get("d_real"), m.get("d_fake")
    if kind in ("hinge", "least_squares"):
        high, low = (1.0, -1.0) if kind == "hinge" else (0.8 * target, 0.2)
        if d_real is None or d_fake is None or not (d_real >= high and d_fake <= low):
            return None
        return f"D's raw output {d_real:.2f} on real, {d_fake:.2f} on fake"
    return ""


def _vanishing_gradients(run: _Run, m: dict[str, float]) -> str | None:
    g_grad = m.get("g_grad_norm")
    confident = _d_confident(run, m)
    if g_grad is None or confident is None:
        return None
    if run.spec.loss.kind == "minimax" and confident:
        # d/dlogit log(1 - D(G(z))) = -D(G(z)): the saturating loss scales G's signal by D(G(z))
        return (
            f"the discriminator wins ({confident}), and the saturating minimax loss scales the "
            f"generator's gradient by D(G(z)) = {m['p_fake']:.3f} (norm {g_grad:.2g})"
        )
    reference = run.reference("g_grad_norm")
    if g_grad >= TINY_GRADIENT and (reference is None or g_grad >= 0.01 * reference):
        return None
    where = f" ({confident})" if confident else ""
    return f"the discriminator wins{where} and the generator's gradient norm is {g_grad:.2g}"


def _d_loss_floor(run: _Run) -> float | None:
    """The smallest D loss this loss can reach, plus a tolerance; None for Wasserstein critics."""
    kind, smoothing = run.spec.loss.kind, run.spec.loss.label_smoothing
    if LOSSES[kind].bce:
        t = 1.0 - smoothing
        entropy = 0.0 if smoothing == 0 else -(t * math.log(t) + smoothing * math.log(smoothing))
        return entropy + 0.05
    return LOSSES[kind].d_loss_floor


def _overpowering(run: _Run, m: dict[str, float]) -> str | None:
    d_loss, floor = m.get("d_adv_loss", m.get("d_loss")), _d_loss_floor(run)
    if d_loss is None or floor is None or d_loss > floor:
        return None
    return f"the discriminator's loss stays at {d_loss:.3g}, its minimum"


def _oscillating(run: _Run, m: dict[str, float]) -> str | None:
    """Swings that reverse at least six times over the history, well above the noise: the series is
    detrended (a drifting loss is no oscillation), smoothed, and its sign flips counted with
    hysteresis (noise near zero flips nothing). A critic's output has no fixed zero, so with
    Wasserstein and hinge losses G's loss -D(G(z)) drifts harmlessly: only D's loss is read."""
    d_loss = "d_adv_loss" if "d_adv_loss" in m else "d_loss"  # without penalties
    critic = LOSSES[run.spec.loss.kind].critic
    for name in (d_loss,) if critic else ("g_loss", d_loss):
        values = run.series(name)
        if len(values) < HISTORY or not all(math.isfinite(v) for v in values):
            continue
        slope, intercept = statistics.linear_regression(range(len(values)), values)
        detrended = [v - (slope * i + intercept) for i, v in enumerate(values)]
        smooth = [
            statistics.fmean(detrended[i : i + SMOOTHING])
            for i in range(len(values) - SMOOTHING + 1)
        ]
        noise = statistics.pstdev(
            v - s for v, s in zip(detrended[SMOOTHING // 2 :], smooth, strict=False)
        ) / math.sqrt(SMOOTHING)
        amplitude = statistics.pstdev(smooth)
        level = statistics.median(abs(v) for v in values)
        if amplitude > 3 * noise and amplitude > 0.1 * level and _flips(smooth, 2 * noise) >= 6:
            low, high = min(values), max(values)
            return (
                f"{name} keeps swinging between about {low:.3g} and {high:.3g} "
                f"over the last {HISTORY} logged points"
            )
    return None


def _flips(series: list[float], band: float) -> int:
    """Sign changes of a series that count only once it leaves [-band, band]."""
    flips, side = 0, 0
    for value in series:
        new_side = 1 if value > band else -1 if value < -band else side
        flips += int(side != 0 and new_side != side)
        side = new_side
    return flips


def _d_overfitting(run: _Run, m: dict[str, float]) -> str | None:
    """ADA's heuristic: D keeps putting nearly every real image it trains on on the real side.
    Only for images without augmentation (the advice is to turn it on)."""
    spec, recent = run.spec, run.series("d_real_sign")[-RT_SMOOTHING:]
    if "d_real_sign" not in m or spec.augment.kind != "none" or spec.model.image_size is None:
        return None  # no r_t for this loss, augmented already, or 2-D points
    if run.step < OVERFITTING_AFTER * spec.training.steps or len(recent) < RT_SMOOTHING:
        return None
    r_t = statistics.median(recent)
    if r_t < OVERFITTING_RT:
        return None
    return (
        f"D judges {(1 + r_t) / 2:.0%} of the real images it trains on real "
        f"(r_t = E[sign D(real)] = {r_t:.2f} over the last {RT_SMOOTHING} logged batches; "
        "adaptive augmentation holds it near 0.6), "
        "a sign that it memorises the training images"
    )


# --- eval rules -------------------------------------------------------------------------------


def _mode_collapse(run: _Run, m: dict[str, float]) -> str | None:
    """Variety lost while the samples look real, or variety the run had and lost. A run that only
    needs more training has low quality and low variety together (an untrained generator's
    samples all look alike), and improves on both. Two independent signs warn at once (the final
    evaluation must be able to report a collapse); a single sign must recur at the next one."""
    best, looks_real = run.best, _looks_real(m)
    evidence = []
    modes, mixture = m.get("modes_captured"), MIXTURES.get(run.spec.dataset.builtin or "")
    if modes is not None and mixture is not None:
        total = len(mixture.modes)
        drop = max(1, math.ceil(0.1 * total))
        if modes <= best.get("modes_captured", modes) - drop:
            evidence.append(
                f"modes captured fell from {best['modes_captured']:.0f} to {modes:.0f} of {total}"
            )
        elif m.get("high_quality_fraction", 0.0) >= 0.5 and modes <= total - drop:
            evidence.append(
                f"samples sit on the modes ({m['high_quality_fraction']:.0%} high quality) but "
                f"only {modes:.0f} of {total} modes are captured"
            )
    coverage = m.get("class_coverage")
    if coverage is not None and coverage <= best.get("class_coverage", coverage) - 0.2:
        classes = f" of {run.num_classes} classes" if run.num_classes else " of the classes"
        evidence.append(
            f"class coverage fell from {best['class_coverage']:.0%} to {coverage:.0%}{classes}"
        )
    diversity = m.get("diversity_ratio")
    if (
        diversity is not None
        and diversity < 0.5
        and (looks_real or diversity <= best.get("diversity_ratio", diversity) - 0.3)
    ):
        evidence.append(f"samples are only {diversity:.0%} as varied as real images of the class")
    duplicates = m.get("duplicate_fraction")
    if (
        duplicates is not None
        and duplicates > 0.2
        and (looks_real or duplicates >= best.get("duplicate_fraction", duplicates) + 0.3)
    ):
        evidence.append(
            f"{duplicates:.0%} of samples are near-duplicates of another sample "
            "(real data: about 1%)"
        )
    precision, recall = m.get("precision"), m.get("recall")
    if precision is not None and recall is not None and precision >= 0.5 and recall < 0.1:
        evidence.append(
            f"samples look real (precision {precision:.2f}) but cover little of the data "
            f"(recall {recall:.2f})"
        )
    single_and_new = len(evidence) == 1 and not run.collapse_evidence_last_eval
    run.collapse_evidence_last_eval = bool(evidence)
    return None if single_and_new else "; ".join(evidence) or None


def _class_collapse(run: _Run, m: dict[str, float]) -> str | None:
    """A conditional G whose samples of one class turned into another class's (seen on
    Fashion-MNIST: sandals into sneakers, late in a run that had drawn every class well). The
    mean class accuracy hides it (one class of ten lost costs it a tenth) and the class stays
    covered, because the evaluator still finds that class among other classes' samples."""
    lowest, best = m.get("lowest_class_accuracy"), run.best.get("lowest_class_accuracy")
    if lowest is None or best is None:
        return None
    if lowest > CLASS_COLLAPSE_BELOW or lowest > best - CLASS_COLLAPSE_DROP:
        return None
    return (
        f"at an earlier evaluation the evaluator recognised every class in at least {best:.0%} "
        f"of the samples asked for it; now one class is recognised in only {lowest:.0%}: its "
        "samples look like another class"
    )


def _looks_real(m: dict[str, float]) -> bool:
    """Sample quality: precision, else the evaluator recognising the conditioned class."""
    if "precision" in m:
        return m["precision"] >= 0.3
    if "class_accuracy" in m and "evaluator_accuracy" in m:
        return m["class_accuracy"] >= 0.5 * m["evaluator_accuracy"]
    return False


# --- advice -----------------------------------------------------------------------------------


def _stabilising_loss(spec: Spec) -> str:
    if spec.loss.kind == "wgan_gp":
        return "model.spectral_norm true"
    return "loss.kind 'wgan_gp' (or 'hinge' with model.spectral_norm true)"


def _divergence_advice(spec: Spec) -> str:
    wasserstein = spec.loss.kind == "wasserstein"
    clip = "; with 'wasserstein', a smaller loss.weight_clip" if wasserstein else ""
    return (
        "Training may be about to diverge. Try lower learning rates (halve both), "
        f"{_stabilising_loss(spec)}, or training.mixed_precision 'off'{clip}."
    )


def _vanishing_advice(spec: Spec) -> str:
    first = (
        "switch loss.kind from 'minimax' to 'non_saturating': -log D(G(z)) keeps its gradient "
        "when D wins, log(1 - D(G(z))) does not; or "
        if spec.loss.kind == "minimax"
        else ""
    )
    return (
        f"The generator is getting almost no gradient. Try {first}{_stabilising_loss(spec)}, "
        "a lower discriminator learning rate (TTUR), loss.label_smoothing 0.1 or "
        "loss.instance_noise 0.1."
    )


def _overpowering_advice(spec: Spec) -> str:
    n_critic = spec.optimizer.n_critic
    fewer = f"optimizer.n_critic 1 instead of {n_critic}, " if n_critic > 1 else ""
    return (
        "The discriminator is winning too easily, so the generator learns little from it. Try a "
        f"lower discriminator learning rate (TTUR), {fewer}loss.label_smoothing 0.1 or "
        "loss.instance_noise 0.1, model.spectral_norm true or loss.r1 1.0, or more training data."
    )


def _overfitting_advice(spec: Spec) -> str:
    lecam = "loss.lecam 0.3 (LeCam regularisation), " if not spec.loss.lecam else ""
    return (
        "The discriminator is overfitting the training images, which happens with little data; "
        "its verdicts then stop teaching the generator. Turn augmentation on: augment.kind "
        f"'ada' (or 'diffaugment'); also try {lecam}or more training data. See docs/small-data.md."
    )


def _oscillation_advice(spec: Spec) -> str:
    return (
        "Generator and discriminator are chasing each other instead of converging. Try lower "
        f"learning rates, Adam betas [0.0, 0.9] or [0.5, 0.999], {_stabilising_loss(spec)}, "
        "loss.r1 1.0, and an EMA generator (training.ema_decay 0.999)."
    )


def _mode_collapse_advice(spec: Spec) -> str:
    r1 = (
        "an R1 penalty on D (loss.r1 0.1: on the 25-mode grid benchmark it is what keeps every "
        "mode), "
        if spec.loss.r1 == 0 and spec.loss.kind != "wgan_gp"
        else ""
    )
    return (
        "This is mode collapse, not a lack of training: a run that only needs more steps gets "
        f"sharper and more varied together, while here variety is lost. Try {r1}model.minibatch "
        "'stddev' or 'discrimination', model.pack 2-4 (PacGAN; needs conditioning 'none' or "
        f"'concat'), {_stabilising_loss(spec)}, a lower generator learning rate, or more data."
    )


def _class_collapse_advice(spec: Spec) -> str:
    return (
        "Look at that class's row of the sample grids. Such a class can come back at a later "
        "evaluation or stay lost; an earlier checkpoint holds the generator from before the "
        "fall (the service keeps the best-evaluated one). Try a lower learning rate, or "
        "letting it fall late in training (optimizer.lr_schedule 'linear_decay'), an EMA "
        "generator (training.ema_decay 0.999), or a larger batch."
    )


# Windows count observations: logged steps (every monitor.log_every) or evaluations.
# fmt: off
STEP_RULES: tuple[Rule, ...] = (
    # code, window, rearm, check, advice[, unless]
    Rule("divergence_risk", 2, 20, _diverging, _divergence_advice),
    Rule("vanishing_gradients", 20, 20, _vanishing_gradients, _vanishing_advice),
    Rule("discriminator_overpowering", 20, 20, _overpowering, _overpowering_advice,
         unless="vanishing_gradients"),
    Rule("oscillation", 10, 30, _oscillating, _oscillation_advice),
    Rule("discriminator_overfitting", 10, 20, _d_overfitting, _overfitting_advice),
)
# fmt: on
EVAL_RULES: tuple[Rule, ...] = (
    Rule("mode_collapse", 1, 2, _mode_collapse, _mode_collapse_advice),
    Rule("class_collapse", 1, 2, _class_collapse, _class_collapse_advice),
)


@dataclass
class _Episode:
    held: int = 0  # consecutive observations with the condition true
    clear: int = 0  # consecutive observations with it false since the warning
    warned: bool = False


class Diagnostics:
    """Feed it every logged step and every evaluation; it returns the warnings to publish."""

    def __init__(self, spec: Spec, num_classes: int) -> None:
        self._run = _Run(spec, num_classes)
        self._episodes = {rule.code: _Episode() for rule in (*STEP_RULES, *EVAL_RULES)}

    def observe_step(self, step: int, metrics: dict[str, float]) -> list[Event]:
        run = self._run
        run.recent.append(metrics)
        run.step = step
        for name, value in metrics.items():
            early = run.early.setdefault(name, [])
            if len(early) < REFERENCE_COUNT and math.isfinite(value):
                early.append(value)
        return self._apply(STEP_RULES, step, metrics)

    def observe_eval(self, step: int, metrics: dict[str, float]) -> list[Event]:
        events = self._apply(EVAL_RULES, step, metrics)
        for name, better in BEST.items():
            if name in metrics:
                self._run.best[name] = better(
                    self._run.best.get(name, metrics[name]), metrics[name]
                )
        return events

    def _apply(self, rules: tuple[Rule, ...], step: int, metrics: dict[str, float]) -> list[Event]:
        events = []
        for rule in rules:
            episode, evidence = self._episodes[rule.code], rule.check(self._run, metrics)
            if evidence is None:
                episode.held = 0
                episode.clear += 1
                if episode.warned and episode.clear >= rule.rearm:
                    episode.warned = False
                continue
            episode.held, episode.clear = episode.held + 1, 0
            silenced = rule.unless is not None and self._episodes[rule.unless].warned
            if episode.held >= rule.window and not episode.warned and not silenced:
                episode.warned = True
                title = rule.code.replace("_", " ").capitalize()
                message = f"{title}: {evidence}. {rule.advice(self._run.spec)}"
                events.append(Event(step, "warning", rule.code, message))
        return events
