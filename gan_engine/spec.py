"""The training spec: one pydantic model, the single source of truth for a run.

A spec may name a ``preset`` (see ``gan_engine/presets/*.yaml``); the preset fills in fields and
any field the user wrote explicitly wins. Validation resolves every ``auto`` and fills every
default that depends on other fields (WGAN-GP's penalty, D's normalisation), so a ``Spec`` is
always the resolved form: ``Spec.model_validate`` cannot hand the Trainer a half-read spec.
``model.image_size`` left unset follows the data; it is resolved for builtins at validation and
for packs by ``Spec.fitted_to`` once their image size is known.

Numbers are strict: integers are not booleans or strings, floats are finite.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gan_engine.errors import EngineError, FieldConflict, Problem
from gan_engine.losses import LOSSES, LossKind
from gan_engine.precision import Precision

PointDatasetName = Literal["ring8", "grid25"]
ImageDatasetName = Literal["digits", "mnist", "fashion-mnist"]
# Paired (input -> target) builtins for task 'translation', derived on the fly from image data.
PairedDatasetName = Literal[
    "edges2fashion", "superres-x4-fashion", "superres-x4-mnist", "superres-x4-photos"
]
BuiltinName = Literal[PointDatasetName, ImageDatasetName, PairedDatasetName]
BUILTIN_DATASETS: tuple[str, ...] = get_args(BuiltinName)
POINT_DATASETS: tuple[str, ...] = get_args(PointDatasetName)
PAIRED_DATASETS: tuple[str, ...] = get_args(PairedDatasetName)
# The side of each builtin image dataset's square images, as stored.
BUILTIN_IMAGE_SIDES: dict[str, int] = {
    "digits": 8, "mnist": 28, "fashion-mnist": 28, "edges2fashion": 28,
    "superres-x4-fashion": 28, "superres-x4-mnist": 28, "superres-x4-photos": 64,
}  # fmt: skip

Task = Literal["generation", "translation"]

PresetName = Literal["dcgan", "wgan", "wgan-gp", "sngan", "cgan"]
PRESETS: tuple[str, ...] = get_args(PresetName)

# "unet" is paired translation's: a U-Net generator and a PatchGAN discriminator (pix2pix).
Architecture = Literal["mlp", "dcgan", "resnet", "unet"]
ARCHITECTURES: tuple[str, ...] = get_args(Architecture)
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 64
# The image sizes each architecture can build: the convolutional ones double from 4x4.
IMAGE_SIZES: dict[str, tuple[int, ...]] = {
    "mlp": tuple(range(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE + 1)),
    "dcgan": (8, 16, 32, 64),
    "resnet": (8, 16, 32, 64),
    "unet": (8, 16, 32, 64),
}
TRANSLATION_ARCHITECTURE = "unet"
Conditioning = Literal["none", "concat", "projection", "acgan"]
GConditioning = Literal["concat", "cbn"]
LOSS_KINDS: tuple[str, ...] = get_args(LossKind)

Int = Annotated[int, Field(strict=True)]
Float = Annotated[float, Field(strict=True)]
Bool = Annotated[bool, Field(strict=True)]
ID_PATTERN = r"^[a-z]{1,8}_[A-Za-z0-9_-]{1,64}$"


class SpecError(EngineError):
    """A spec that cannot be read or does not validate; ``problems`` name the fields."""


def nearest_image_size(architecture: str, side: int) -> int:
    """The image size ``architecture`` supports closest to ``side`` (ties go up: less is lost)."""
    return min(IMAGE_SIZES[architecture], key=lambda size: (abs(size - side), -size))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False, allow_inf_nan=False)


class SubsetSpec(_Strict):
    per_class: Int = Field(..., ge=1, le=1_000_000, description="images kept of each class")
    seed: Int = Field(0, ge=0, lt=2**63, description="the permutation that picks them")


class DatasetSpec(_Strict):
    builtin: BuiltinName | None = None
    id: str | None = Field(
        None, pattern=ID_PATTERN, description="an uploaded dataset (ds_...), for the service"
    )
    path: str | None = Field(
        None, max_length=4096, description="a local .npz pack (engine CLI only)"
    )
    split: Literal["train", "test"] = "train"
    classes: list[Annotated[Int, Field(ge=0, le=9999)]] | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="keep only the images of these class indices (labels and class names stay "
        "the dataset's); e.g. [0] trains on one class, as anomaly detection's one-class protocol",
    )
    subset: SubsetSpec | None = Field(
        None,
        description="train on a fixed, class-balanced subset: per_class images of every class "
        "(after 'classes'), picked by a seeded permutation; evaluation still measures against "
        "the whole dataset (task 'generation' only)",
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Self:
        given = [k for k in ("builtin", "id", "path") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "dataset needs exactly one of 'builtin' (one of "
                f"{', '.join(BUILTIN_DATASETS)}), 'id' (an uploaded dataset) or 'path' "
                f"(a .npz pack); got {given or 'none'}"
            )
        return self

    @property
    def is_points(self) -> bool:
        return self.builtin in POINT_DATASETS


DNorm = Literal["batch", "layer", "none"]


class ModelSpec(_Strict):
    architecture: Architecture = "dcgan"
    conditioning: Conditioning = "none"
    g_conditioning: GConditioning = Field(
        "concat",
        description="how G takes the label, with any conditioning: concat = an embedding "
        "concatenated to z; cbn = class-conditional BatchNorm gains and biases (dcgan, resnet)",
    )
    latent_dim: Int = Field(128, ge=1, le=1024)
    width: Int = Field(64, ge=4, le=1024, description="base channel / hidden-unit count")
    image_size: Int | None = Field(
        None,
        ge=MIN_IMAGE_SIZE,
        le=MAX_IMAGE_SIZE,
        description="side of the square images G makes; unset: the data's own size (the nearest "
        "the architecture supports: 8, 16, 32 or 64 for dcgan and resnet), e.g. 32 for 28x28",
    )
    spectral_norm: Bool = False
    minibatch: Literal["none", "discrimination", "stddev"] = "none"
    minibatch_kernels: Int = Field(
        100,
        ge=1,
        le=512,
        description="minibatch discrimination's kernel count B (each a 5-dim projection); its "
        "cost grows with B x batch_size^2",
    )
    pack: Int = Field(1, ge=1, le=4, description="PacGAN: m samples judged jointly by D")
    d_norm: Literal["auto", DNorm] = Field(
        "auto",
        description="normalisation inside D; auto = batch, but none with spectral norm or mlp, "
        "layer with gradient penalties (per-sample gradients). Resolved at validation",
    )
    mlp_layers: Int = Field(3, ge=1, le=8, description="hidden layers of the mlp architecture")


class LossSpec(_Strict):
    kind: LossKind = "non_saturating"
    gradient_penalty: Float | None = Field(
        None, ge=0, le=1e4, description="WGAN-GP lambda; default 10 (wgan_gp only)"
    )
    weight_clip: Float | None = Field(
        None, gt=0, le=100, description="WGAN clipping; default 0.01 (wasserstein only)"
    )
    r1: Float = Field(0.0, ge=0, le=1e4, description="R1 penalty gamma on real data")
    label_smoothing: Float = Field(0.0, ge=0, lt=0.5, description="one-sided: real target 1 - s")
    feature_matching: Float = Field(
        0.0, ge=0, le=1e4, description="weight of D-feature matching in G loss"
    )
    instance_noise: Float = Field(
        0.0, ge=0, le=10, description="std of noise on D inputs, annealed to 0"
    )
    acgan_weight: Float = Field(1.0, gt=0, le=1e4, description="weight of the auxiliary class loss")
    l1: Float | None = Field(
        None,
        ge=0,
        le=1e4,
        description="task 'translation' only: weight of the L1 distance of G's output to the "
        "target (default 100, as in pix2pix)",
    )
    adversarial: Float = Field(
        1.0,
        ge=0,
        le=1e4,
        description="weight of the adversarial term in G's loss; task 'translation' only may "
        "change it: 0 trains the L1-only baseline (no discriminator)",
    )
    lecam: Float = Field(
        0.0,
        ge=0,
        le=1e4,
        description="weight of LeCam regularisation of D (Tseng et al. 2021): D's outputs are "
        "held near EMA anchors of its outputs on the other side; 0.3 is typical on small data",
    )


AugmentKind = Literal["none", "diffaugment", "ada"]
DiffAugmentPolicy = Literal["translation", "cutout", "color"]


class AugmentSpec(_Strict):
    """Augmentation of every image D sees, real and fake (gan_engine/augment.py)."""

    kind: AugmentKind = Field(
        "none",
        description="diffaugment: the same random policies on every D input (Zhao et al. 2020); "
        "ada: flips, 90° rotations, translation and colour, each with a probability p adapted "
        "to D's overfitting (Karras et al. 2020)",
    )
    policies: list[DiffAugmentPolicy] = Field(
        ["translation", "cutout", "color"],
        min_length=1,
        max_length=3,
        description="diffaugment only: which of translation, cutout, color to apply",
    )
    target: Float = Field(
        0.6, gt=0, lt=1, description="ada only: the r_t = E[sign D(real)] that p steers towards"
    )
    ada_kimg: Float = Field(
        100.0,
        gt=0,
        le=100_000,
        description="ada only: thousands of real images over which p can move from 0 to 1",
    )
    interval: Int = Field(4, ge=1, le=10_000, description="ada only: D steps between p updates")


class OptimizerSpec(_Strict):
    kind: Literal["adam", "rmsprop"] = "adam"
    lr: Float = Field(2e-4, description="learning rate, in (0, 1]; 2e-4 is typical")
    betas: tuple[Float, Float] = (0.5, 0.999)

    @field_validator("lr")
    @classmethod
    def _positive_lr(cls, lr: float) -> float:
        if not 0 < lr <= 1:
            raise ValueError(f"learning rate must be > 0 and <= 1 (2e-4 is typical); got {lr}")
        return lr

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), e.g. [0.5, 0.999]; got {list(betas)}")
        return betas


class OptimizersSpec(_Strict):
    generator: OptimizerSpec = Field(default_factory=OptimizerSpec)
    discriminator: OptimizerSpec = Field(default_factory=OptimizerSpec)
    n_critic: Int = Field(1, ge=1, le=20, description="D steps per G step")
    lr_schedule: Literal["constant", "linear_decay"] = Field(
        "constant", description="linear_decay: both learning rates fall linearly to 0 at the end"
    )


class TrainingSpec(_Strict):
    steps: Int = Field(20000, ge=1, le=10_000_000, description="generator steps")
    batch_size: Int = Field(64, ge=2, le=4096)
    ema_decay: Float = Field(0.999, ge=0, lt=1, description="0 disables the EMA generator")
    seed: Int = Field(1234, ge=0, lt=2**63)
    sync_batchnorm: Bool = Field(
        False,
        description="with devices > 1: G's and D's BatchNorm use the global batch's statistics "
        "(SyncBatchNorm) instead of each rank's share",
    )
    mixed_precision: Precision = Field(
        "auto",
        description="auto: bf16 autocast and channels-last for conv nets where the device has "
        "bf16 units (CUDA; CPUs with AMX or AVX-512 bf16); off: float32; bf16: always",
    )
    compile: Bool = Field(
        False,
        description="torch.compile G's and D's training forward passes (the first steps are slow "
        "while it compiles); not with gradient penalties, whose double backward it cannot run",
    )
    max_runtime_s: Float = Field(86400, gt=0, le=30 * 86400)
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when visible; the worker's hardware decides"
    )
    devices: Int = Field(
        1,
        ge=1,
        le=64,
        description="devices one job trains on: N > 1 runs N DDP ranks under torchrun "
        "(NCCL on GPUs, gloo on CPU), each with batch_size / N of the global batch",
    )


Metric = Literal["fid", "class_accuracy", "coverage", "precision_recall", "modes"]


class MonitorSpec(_Strict):
    log_every: Int = Field(10, ge=1, le=2**31 - 1, description="steps between metric rows")
    sample_every: Int = Field(500, ge=1, le=2**31 - 1)
    eval_every: Int = Field(2000, ge=1, le=2**31 - 1)
    checkpoint_every: Int = Field(1000, ge=1, le=2**31 - 1)
    samples_per_class: Int = Field(8, ge=1, le=32, description="columns of a sample grid")
    eval_samples: Int = Field(2500, ge=100, le=50000)
    metrics: list[Metric] = Field(
        ["fid", "class_accuracy", "coverage"], max_length=len(get_args(Metric))
    )


class Spec(_Strict):
    task: Task = Field(
        "generation",
        description="generation: samples from noise; translation: paired input -> target "
        "images (pix2pix: a U-Net G and a PatchGAN D, adversarial + L1)",
    )
    preset: PresetName | None = None
    dataset: DatasetSpec
    model: ModelSpec = Field(default_factory=ModelSpec)
    loss: LossSpec = Field(default_factory=LossSpec)
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    optimizer: OptimizersSpec = Field(default_factory=OptimizersSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    monitor: MonitorSpec = Field(default_factory=MonitorSpec)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        data = _translation_architecture(data)
        if isinstance(data, dict) and data.get("preset") is not None:
            name = data["preset"]
            if name not in PRESETS:
                return data  # the Literal on `preset` reports it
            return deep_merge(load_preset(name), data)
        return data

    @model_validator(mode="after")
    def _check_and_resolve(self) -> Self:
        """Checks across fields (each names its field), then every ``auto`` resolved."""
        _check_combinations(self)
        self.model = self.model.model_copy(
            update={"d_norm": _resolved_d_norm(self), "image_size": _resolved_image_size(self)}
        )
        loss, facts = self.loss, LOSSES[self.loss.kind]
        translating = self.task == "translation"
        self.loss = loss.model_copy(
            update={
                "l1": (loss.l1 if loss.l1 is not None else DEFAULT_L1) if translating else None,
                "gradient_penalty": loss.gradient_penalty
                if loss.gradient_penalty is not None
                else facts.default_gradient_penalty,
                "weight_clip": loss.weight_clip
                if loss.weight_clip is not None
                else facts.default_weight_clip,
            }
        )
        return self

    @property
    def needs_image_size(self) -> bool:
        """True until the image size is known (a pack or an upload, not yet looked at)."""
        return not self.dataset.is_points and self.model.image_size is None

    def fitted_to(self, height: int, width: int) -> Spec:
        """This spec for images of ``height`` x ``width``: an unset ``model.image_size`` becomes
        the nearest size the architecture supports."""
        if not self.needs_image_size:
            return self
        size = nearest_image_size(self.model.architecture, max(height, width))
        return self.model_copy(update={"model": self.model.model_copy(update={"image_size": size})})

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


DEFAULT_L1 = 100.0  # Isola et al. 2017


def _translation_architecture(data: Any) -> Any:
    """Task 'translation' builds a U-Net G and a PatchGAN D unless the spec names another
    architecture (which the checks then refuse, saying why)."""
    if not isinstance(data, dict) or data.get("task") != "translation":
        return data
    model = data.get("model")
    if model is None:
        return {**data, "model": {"architecture": TRANSLATION_ARCHITECTURE}}
    if isinstance(model, dict) and "architecture" not in model:
        return {**data, "model": {**model, "architecture": TRANSLATION_ARCHITECTURE}}
    return data


def _check_task(spec: Spec) -> None:
    m, loss, builtin = spec.model, spec.loss, spec.dataset.builtin
    if spec.task == "generation":
        if builtin in PAIRED_DATASETS:
            raise FieldConflict(
                "dataset.builtin",
                f"'{builtin}' is paired data (input -> target): use it with task "
                "'translation', or a dataset of images to generate from",
            )
        if m.architecture == TRANSLATION_ARCHITECTURE:
            raise FieldConflict(
                "model.architecture",
                "'unet' translates images (task 'translation'); to generate from noise use "
                f"{', '.join(a for a in ARCHITECTURES if a != TRANSLATION_ARCHITECTURE)}",
            )
        for name in ("l1", "adversarial"):
            if getattr(loss, name) != LossSpec.model_fields[name].default:
                raise FieldConflict(f"loss.{name}", "applies only to task 'translation': remove it")
        return
    if builtin is not None and builtin not in PAIRED_DATASETS:
        raise FieldConflict(
            "dataset.builtin",
            f"task 'translation' needs paired data; '{builtin}' is not: use one of "
            f"{', '.join(PAIRED_DATASETS)}, or a paired pack (inputs, targets)",
        )
    if m.architecture != TRANSLATION_ARCHITECTURE:
        raise FieldConflict(
            "model.architecture",
            f"task 'translation' uses 'unet' (a U-Net G, a PatchGAN D), not "
            f"'{m.architecture}': remove model.architecture or set it to 'unet'",
        )
    defaults = ModelSpec.model_fields
    for name in ("conditioning", "g_conditioning", "minibatch", "pack"):
        if getattr(m, name) != defaults[name].default:
            raise FieldConflict(
                f"model.{name}",
                "does not apply to task 'translation' (the input image is G's and D's "
                "condition): remove it",
            )
    if spec.training.compile:
        raise FieldConflict(
            "training.compile", "is not supported for task 'translation' yet: set it false"
        )


def _check_augment(spec: Spec) -> None:
    augment, defaults = spec.augment, AugmentSpec.model_fields
    owners = {"policies": "diffaugment", "target": "ada", "ada_kimg": "ada", "interval": "ada"}
    for name, owner in owners.items():
        if augment.kind != owner and getattr(augment, name) != defaults[name].default:
            raise FieldConflict(
                f"augment.{name}",
                f"applies only to augment.kind '{owner}' (got '{augment.kind}'): remove it",
            )
    if augment.kind == "none":
        return
    if spec.dataset.is_points:
        raise FieldConflict(
            "augment",
            f"dataset '{spec.dataset.builtin}' is 2-D points, which image augmentations do not "
            "apply to: set augment.kind 'none'",
        )
    if spec.task == "translation":
        raise FieldConflict(
            "augment",
            "does not apply to task 'translation' (pix2pix's D judges each output pixel-aligned "
            "with its input): set augment.kind 'none'",
        )
    if augment.kind == "ada" and LOSSES[spec.loss.kind].decision_boundary is None:
        raise FieldConflict(
            "augment.kind",
            f"'ada' steers p by the sign of D's output on reals, and loss.kind "
            f"'{spec.loss.kind}' has a critic with no fixed zero: use augment.kind "
            "'diffaugment', or a loss such as 'non_saturating' or 'hinge'",
        )


def _check_combinations(spec: Spec) -> None:
    _check_task(spec)
    _check_augment(spec)
    if spec.task == "translation" and spec.loss.lecam:
        raise FieldConflict("loss.lecam", "applies only to task 'generation': remove it")
    if spec.task == "translation" and spec.dataset.subset is not None:
        raise FieldConflict("dataset.subset", "applies only to task 'generation': remove it")
    m, loss, facts = spec.model, spec.loss, LOSSES[spec.loss.kind]
    if loss.weight_clip is not None and facts.default_weight_clip is None:
        raise FieldConflict(
            "loss.weight_clip",
            f"applies only to loss.kind 'wasserstein' (got '{loss.kind}'); remove it, or use "
            "kind 'wasserstein'",
        )
    if loss.gradient_penalty is not None and facts.default_gradient_penalty is None:
        raise FieldConflict(
            "loss.gradient_penalty",
            f"applies only to loss.kind 'wgan_gp' (got '{loss.kind}'); use loss.r1 for a "
            "penalty with other losses",
        )
    if loss.label_smoothing and not facts.target_based:
        targeted = ", ".join(f"'{k}'" for k, f in LOSSES.items() if f.target_based)
        raise FieldConflict(
            "loss.label_smoothing",
            f"needs a target-based loss: {targeted} (got '{loss.kind}')",
        )
    if spec.dataset.is_points and m.architecture != "mlp":
        raise FieldConflict(
            "model.architecture",
            f"'{m.architecture}' needs images; dataset '{spec.dataset.builtin}' is 2-D points: "
            "use architecture 'mlp'",
        )
    sizes = IMAGE_SIZES[m.architecture]
    if m.image_size is not None and m.image_size not in sizes:
        raise FieldConflict(
            "model.image_size",
            f"{m.image_size} does not suit architecture '{m.architecture}': use "
            f"{', '.join(map(str, sizes[:-1]))} or {sizes[-1]}, or leave it unset to follow the "
            "data",
        )
    if m.g_conditioning == "cbn" and m.conditioning == "none":
        raise FieldConflict(
            "model.g_conditioning",
            "'cbn' conditions G on the class: set model.conditioning (concat, projection or "
            "acgan), or remove it",
        )
    if m.g_conditioning == "cbn" and m.architecture == "mlp":
        raise FieldConflict(
            "model.g_conditioning",
            "'cbn' replaces G's BatchNorms and the mlp generator has none: use architecture "
            "dcgan or resnet, or g_conditioning 'concat'",
        )
    default_kernels = ModelSpec.model_fields["minibatch_kernels"].default
    if m.minibatch_kernels != default_kernels and m.minibatch != "discrimination":
        raise FieldConflict(
            "model.minibatch_kernels",
            f"applies only to model.minibatch 'discrimination' (got '{m.minibatch}'): remove "
            "it, or set minibatch 'discrimination'",
        )
    if m.pack > 1 and m.conditioning in ("projection", "acgan"):
        raise FieldConflict(
            "model.pack",
            f"{m.pack} cannot be combined with conditioning '{m.conditioning}' (a packed D "
            "judges several samples of different classes at once): use conditioning 'none' or "
            "'concat', or pack 1",
        )
    penalty = (
        loss.gradient_penalty
        if loss.gradient_penalty is not None
        else facts.default_gradient_penalty
    )
    if spec.training.compile and (penalty or loss.r1):
        raise FieldConflict(
            "training.compile",
            "cannot be combined with a gradient penalty (loss.kind 'wgan_gp' or loss.r1): "
            "torch.compile does not run their double backward; turn one of them off",
        )
    batch = spec.training.batch_size
    if batch % m.pack:
        raise FieldConflict(
            "training.batch_size", f"{batch} must be a multiple of model.pack {m.pack}"
        )
    if batch // m.pack < 2:
        raise FieldConflict(
            "training.batch_size",
            f"{batch} with model.pack {m.pack} leaves fewer than 2 D inputs a batch: raise it",
        )
    _check_devices(spec)


def _check_devices(spec: Spec) -> None:
    """What N DDP ranks can split: equal shares, no statistic coupling a batch's samples."""
    devices, batch, m = spec.training.devices, spec.training.batch_size, spec.model
    if devices == 1:
        return
    if batch % devices:
        raise FieldConflict(
            "training.batch_size",
            f"{batch} must be a multiple of training.devices {devices} (each rank trains on an "
            "equal share of the global batch)",
        )
    if (batch // devices) % m.pack or batch // devices // m.pack < 2:
        raise FieldConflict(
            "training.devices",
            f"{devices} leaves each rank {batch // devices} samples, which model.pack {m.pack} "
            "cannot split into at least 2 D inputs: raise training.batch_size",
        )
    coupled = {
        "model.minibatch": m.minibatch != "none",
        "loss.feature_matching": bool(spec.loss.feature_matching),
    }
    for name, used in coupled.items():
        if used:
            raise FieldConflict(
                name,
                "cannot be combined with training.devices > 1: it couples the whole batch, "
                "which the ranks split (or it is not supported on several devices yet); use "
                "training.devices 1",
            )


def _resolved_d_norm(spec: Spec) -> DNorm:
    m, loss = spec.model, spec.loss
    if m.d_norm != "auto":
        return m.d_norm
    if LOSSES[loss.kind].default_gradient_penalty is not None or loss.r1 > 0:
        return "layer"  # per-sample gradients: BatchNorm would mix the batch into each one
    if m.spectral_norm or m.architecture == "mlp":
        return "none"
    return "batch"


def _resolved_image_size(spec: Spec) -> int | None:
    if spec.model.image_size is not None or spec.dataset.builtin not in BUILTIN_IMAGE_SIDES:
        return spec.model.image_size
    return nearest_image_size(spec.model.architecture, BUILTIN_IMAGE_SIDES[spec.dataset.builtin])


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@cache
def _preset_text(name: str) -> str:
    return resources.files("gan_engine.presets").joinpath(f"{name}.yaml").read_text()


def load_preset(name: str) -> dict[str, Any]:
    return yaml.safe_load(_preset_text(name)) or {}


def problems_of(error: ValidationError) -> list[Problem]:
    """Each problem with its field: pydantic's ``loc``, or the ``FieldConflict`` a check across
    fields raised. Never the input value (it may be huge)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, FieldConflict):
            problems.append(Problem(cause.loc, str(cause)))
            continue
        loc = ".".join(str(p) for p in item["loc"]) or None
        problems.append(Problem(loc, item["msg"].removeprefix("Value error, ")))
    return problems


def parse_spec(data: Any) -> Spec:
    """Validate a dict; raise SpecError naming each field at fault."""
    try:
        return Spec.model_validate(data)
    except ValidationError as error:
        raise SpecError(problems=problems_of(error), total=error.error_count()) from None


def load_spec(path: str | Path) -> Spec:
    """Read a spec from a .yaml/.yml/.json file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise SpecError(f"cannot read spec {path}: {error.strerror}") from error
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise SpecError(
            f"{path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {error}"
        ) from error
    if not isinstance(data, dict):
        raise SpecError(f"{path} must hold a mapping of spec fields, not {type(data).__name__}")
    return parse_spec(data)
