"""The training spec: one pydantic model, the single source of truth for a run.

A spec may name a ``preset`` (see ``gan_engine/presets/*.yaml``); the preset fills in fields and
any field the user wrote explicitly wins. ``normalised()`` returns the spec with every default
filled in and every ``auto`` resolved, which is what the service stores.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

BUILTIN_DATASETS = ("ring8", "grid25", "digits", "mnist", "fashion-mnist")
POINT_DATASETS = ("ring8", "grid25")
PRESETS = ("dcgan", "wgan", "wgan-gp", "sngan", "cgan")

BuiltinName = Literal["ring8", "grid25", "digits", "mnist", "fashion-mnist"]
Architecture = Literal["mlp", "dcgan", "resnet"]
Conditioning = Literal["none", "concat", "projection", "acgan"]
LossKind = Literal["minimax", "non_saturating", "wasserstein", "wgan_gp", "hinge", "least_squares"]
BCE_LOSSES = ("minimax", "non_saturating")


class SpecError(ValueError):
    """A spec that cannot be read or does not validate; the message is meant for the user."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class DatasetSpec(_Strict):
    builtin: BuiltinName | None = None
    id: str | None = Field(None, description="an uploaded dataset, resolved by the service")
    path: str | None = Field(None, description="a local .npz pack (engine CLI only)")
    split: Literal["train", "test"] = "train"

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


class ModelSpec(_Strict):
    architecture: Architecture = "dcgan"
    conditioning: Conditioning = "none"
    latent_dim: int = Field(128, ge=1, le=1024)
    width: int = Field(64, ge=4, le=1024, description="base channel / hidden-unit count")
    image_size: int = Field(32, ge=8, le=64)
    spectral_norm: bool = False
    minibatch: Literal["none", "discrimination", "stddev"] = "none"
    minibatch_kernels: int = Field(
        100,
        ge=1,
        le=512,
        description="minibatch discrimination's kernel count B (each a 5-dim projection); its "
        "cost grows with B x batch_size^2",
    )
    pack: int = Field(1, ge=1, le=4, description="PacGAN: m samples judged jointly by D")
    d_norm: Literal["auto", "batch", "layer", "none"] = Field(
        "auto",
        description="normalisation inside D; auto = batch, but none with spectral norm or mlp, "
        "layer with gradient penalties (per-sample gradients)",
    )
    mlp_layers: int = Field(3, ge=1, le=8, description="hidden layers of the mlp architecture")


class LossSpec(_Strict):
    kind: LossKind = "non_saturating"
    gradient_penalty: float | None = Field(None, ge=0, description="WGAN-GP lambda; default 10")
    weight_clip: float | None = Field(None, gt=0, description="WGAN clipping; default 0.01")
    r1: float = Field(0.0, ge=0, description="R1 penalty gamma on real data")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="one-sided: real target 1 - s")
    feature_matching: float = Field(0.0, ge=0, description="weight of D-feature matching in G loss")
    instance_noise: float = Field(0.0, ge=0, description="std of noise on D inputs, annealed to 0")
    acgan_weight: float = Field(1.0, gt=0, description="weight of the auxiliary class loss")


class OptimizerSpec(_Strict):
    kind: Literal["adam", "rmsprop"] = "adam"
    lr: float = Field(2e-4, description="learning rate, > 0")
    betas: tuple[float, float] = (0.5, 0.999)

    @field_validator("lr")
    @classmethod
    def _positive_lr(cls, lr: float) -> float:
        if not lr > 0 or lr > 1:
            raise ValueError(f"learning rate must be > 0 and <= 1 (2e-4 is typical); got {lr}")
        return lr

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must lie in [0, 1), e.g. [0.5, 0.999]; got {list(betas)}")
        return betas


class OptimizersSpec(_Strict):
    generator: OptimizerSpec = OptimizerSpec()
    discriminator: OptimizerSpec = OptimizerSpec()
    n_critic: int = Field(1, ge=1, le=20, description="D steps per G step")
    lr_schedule: Literal["constant", "linear_decay"] = Field(
        "constant", description="linear_decay: both learning rates fall linearly to 0 at the end"
    )


class TrainingSpec(_Strict):
    steps: int = Field(20000, ge=1, le=10_000_000, description="generator steps")
    batch_size: int = Field(64, ge=2, le=4096)
    ema_decay: float = Field(0.999, ge=0, lt=1, description="0 disables the EMA generator")
    seed: int = Field(1234, ge=0, lt=2**63)
    mixed_precision: Literal["auto", "off", "bf16"] = "auto"
    max_runtime_s: float = Field(86400, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"


Metric = Literal["fid", "class_accuracy", "coverage", "precision_recall", "modes"]


class MonitorSpec(_Strict):
    log_every: int = Field(10, ge=1, description="steps between metric rows")
    sample_every: int = Field(500, ge=1)
    eval_every: int = Field(2000, ge=1)
    checkpoint_every: int = Field(1000, ge=1)
    samples_per_class: int = Field(8, ge=1, le=32, description="columns of a sample grid")
    eval_samples: int = Field(2500, ge=100, le=50000)
    metrics: list[Metric] = ["fid", "class_accuracy", "coverage"]


class Spec(_Strict):
    preset: Literal["dcgan", "wgan", "wgan-gp", "sngan", "cgan"] | None = None
    dataset: DatasetSpec
    model: ModelSpec = ModelSpec()
    loss: LossSpec = LossSpec()
    optimizer: OptimizersSpec = OptimizersSpec()
    training: TrainingSpec = TrainingSpec()
    monitor: MonitorSpec = MonitorSpec()

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            name = data["preset"]
            if name not in PRESETS:
                return data  # the Literal on `preset` reports it
            return deep_merge(load_preset(name), data)
        return data

    @model_validator(mode="after")
    def _check_combinations(self) -> Self:
        m, loss = self.model, self.loss
        if loss.weight_clip is not None and loss.kind != "wasserstein":
            raise ValueError(
                f"loss.weight_clip applies only to loss.kind 'wasserstein' (got '{loss.kind}'); "
                "remove it, or use kind 'wasserstein'"
            )
        if loss.gradient_penalty is not None and loss.kind != "wgan_gp":
            raise ValueError(
                f"loss.gradient_penalty applies only to loss.kind 'wgan_gp' (got '{loss.kind}'); "
                "use loss.r1 for a penalty with other losses"
            )
        if loss.label_smoothing and loss.kind not in (*BCE_LOSSES, "least_squares"):
            raise ValueError(
                "loss.label_smoothing needs a target-based loss: 'minimax', 'non_saturating' or "
                f"'least_squares' (got '{loss.kind}')"
            )
        if self.dataset.is_points and m.architecture != "mlp":
            raise ValueError(
                f"model.architecture '{m.architecture}' needs images; dataset "
                f"'{self.dataset.builtin}' is 2-D points: use architecture 'mlp'"
            )
        if m.architecture in ("dcgan", "resnet") and m.image_size not in (8, 16, 32, 64):
            raise ValueError(
                f"model.image_size {m.image_size} does not suit architecture '{m.architecture}': "
                "use 8, 16, 32 or 64"
            )
        default_kernels = ModelSpec.model_fields["minibatch_kernels"].default
        if m.minibatch_kernels != default_kernels and m.minibatch != "discrimination":
            raise ValueError(
                "model.minibatch_kernels applies only to model.minibatch 'discrimination' "
                f"(got '{m.minibatch}'): remove it, or set minibatch 'discrimination'"
            )
        if m.pack > 1 and m.conditioning in ("projection", "acgan"):
            raise ValueError(
                f"model.pack {m.pack} cannot be combined with conditioning '{m.conditioning}' "
                "(a packed D judges several samples of different classes at once): use "
                "conditioning 'none' or 'concat', or pack 1"
            )
        if self.training.batch_size % m.pack:
            raise ValueError(
                f"training.batch_size {self.training.batch_size} must be a multiple of "
                f"model.pack {m.pack}"
            )
        if self.training.batch_size // m.pack < 2:
            raise ValueError(
                f"training.batch_size {self.training.batch_size} with model.pack {m.pack} leaves "
                "fewer than 2 D inputs a batch: raise batch_size"
            )
        return self

    def normalised(self) -> Spec:
        """A copy with every default filled in and every ``auto`` resolved."""
        m, loss = self.model, self.loss
        d_norm = m.d_norm
        if d_norm == "auto":
            if loss.kind == "wgan_gp" or loss.r1 > 0:
                d_norm = "layer"
            elif m.spectral_norm or m.architecture == "mlp":
                d_norm = "none"
            else:
                d_norm = "batch"
        return self.model_copy(
            update={
                "model": m.model_copy(update={"d_norm": d_norm}),
                "loss": loss.model_copy(
                    update={
                        "gradient_penalty": 10.0
                        if loss.kind == "wgan_gp" and loss.gradient_penalty is None
                        else loss.gradient_penalty,
                        "weight_clip": 0.01
                        if loss.kind == "wasserstein" and loss.weight_clip is None
                        else loss.weight_clip,
                    }
                ),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


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


def format_validation_error(error: ValidationError) -> str:
    """One line per problem: ``field.path: message``."""
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "spec"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "\n".join(lines)


def parse_spec(data: Any) -> Spec:
    """Validate a dict; raise SpecError with a readable message. Returns the normalised spec."""
    try:
        return Spec.model_validate(data).normalised()
    except ValidationError as error:
        raise SpecError(format_validation_error(error)) from error


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
