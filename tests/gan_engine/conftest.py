from typing import Any

from gan_engine.callbacks import Callback
from gan_engine.data import Dataset, load_dataset
from gan_engine.events import Event
from gan_engine.spec import ModelSpec, Spec, parse_spec

TINY_IMAGE_MODEL = {"image_size": 8, "width": 8, "latent_dim": 16}
TINY_POINT_MODEL = {"architecture": "mlp", "width": 32, "latent_dim": 4, "mlp_layers": 2}


def tiny_spec(builtin: str = "digits", **overrides: Any) -> Spec:
    """A spec small enough to train a few steps in well under a second."""
    points = builtin in ("ring8", "grid25")
    data: dict[str, Any] = {
        "dataset": {"builtin": builtin},
        "model": dict(TINY_POINT_MODEL if points else TINY_IMAGE_MODEL),
        "training": {"steps": 4, "batch_size": 16, "ema_decay": 0.9, "seed": 7},
        "monitor": {"log_every": 1, "sample_every": 2, "eval_every": 1000, "checkpoint_every": 2,
                    "samples_per_class": 2, "eval_samples": 100, "metrics": []},
    }  # fmt: skip
    for section, values in overrides.items():
        if isinstance(values, dict):
            data[section] = {**data.get(section, {}), **values}
        else:
            data[section] = values
    return parse_spec(data)


def resolved_model(**fields: Any) -> ModelSpec:
    """A model section as the builders get it: from a validated spec, every ``auto`` resolved."""
    training = {"batch_size": 48}  # a multiple of every pack size
    return parse_spec(
        {"dataset": {"builtin": "digits"}, "model": fields, "training": training}
    ).model


_DATASETS: dict[tuple[str, int | None], Dataset] = {}


def dataset_for(spec: Spec) -> Dataset:
    size = None if spec.dataset.is_points else spec.model.image_size
    key = (spec.dataset.builtin or "", size)
    if key not in _DATASETS:
        _DATASETS[key] = load_dataset(spec.dataset, image_size=size)
    return _DATASETS[key]


class Recorder(Callback):
    def __init__(self, stop_at: int | None = None) -> None:
        self.steps: list[tuple[int, dict[str, float]]] = []
        self.events: list[Event] = []
        self.samples: list[tuple[int, bytes]] = []
        self.evals: list[tuple[int, dict[str, float]]] = []
        self.checkpoints: dict[int, dict[str, Any]] = {}
        self.stop_at = stop_at

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.steps.append((step, metrics))

    def on_event(self, event: Event) -> None:
        self.events.append(event)

    def on_sample(self, step: int, png: bytes) -> None:
        self.samples.append((step, png))

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self.evals.append((step, metrics))

    def on_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        from gan_engine.checkpoint import checkpoint_bytes

        self.checkpoints[step] = checkpoint_bytes(state)  # a copy, as a real sink would make

    def should_stop(self, step: int) -> bool:
        return self.stop_at is not None and step >= self.stop_at
