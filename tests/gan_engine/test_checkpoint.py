import io
import pickle

import pytest
import torch

from gan_engine.checkpoint import (
    CheckpointError,
    checkpoint_bytes,
    checkpoint_path,
    load_checkpoint,
    newest_checkpoint,
    save_checkpoint,
)
from gan_engine.trainer import Trainer
from tests.gan_engine.conftest import dataset_for, tiny_spec


class Payload:
    def __reduce__(self):  # what a malicious pickle would do on load
        return (print, ("owned",))


def test_trainer_state_round_trips_through_weights_only_load(tmp_path) -> None:
    spec = tiny_spec("digits")
    trainer = Trainer(spec, dataset_for(spec))
    trainer.fit()
    save_checkpoint(trainer.state_dict(), checkpoint_path(tmp_path, trainer.step))
    state = load_checkpoint(newest_checkpoint(tmp_path))
    assert state["step"] == 4 and set(state["rng"]) == {"torch", "cuda", "data"}
    name, tensor = next(iter(trainer.G.state_dict().items()))
    assert torch.equal(state["generator"][name], tensor)


def test_arbitrary_pickles_are_refused() -> None:
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(pickle.dumps({"format": 1, "evil": Payload()}))


def test_foreign_or_corrupt_files_are_refused() -> None:
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(checkpoint_bytes({"weights": torch.zeros(2)}))
    with pytest.raises(CheckpointError):
        load_checkpoint(b"not a checkpoint")
    buffer = io.BytesIO(checkpoint_bytes({"format": 1, "step": 2}))
    assert load_checkpoint(buffer)["step"] == 2


def test_newest_checkpoint_orders_by_step(tmp_path) -> None:
    assert newest_checkpoint(tmp_path / "none") is None
    for step in (5, 100, 20):
        save_checkpoint({"format": 1, "step": step}, checkpoint_path(tmp_path, step))
    assert newest_checkpoint(tmp_path).name == "00000100.pt"
    assert not list(tmp_path.glob("*.partial"))
