"""training.devices: 2 gloo ranks on the CPU against one process at the same global batch.

Each 2-rank run is the engine CLI launching torchrun (a subprocess), or for images (whose CLI
run would train an evaluator classifier first) ``tests.gan_engine.ddp_ranks`` under torchrun;
the one-process reference trains in this process. Without BatchNorm (or with SyncBatchNorm)
the two agree to float reduction order; with per-rank BatchNorm only roughly (each rank
normalises its half), so that case is measured in docs/distributed.md, not asserted.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from gan_engine import distributed
from gan_engine.checkpoint import load_checkpoint
from gan_engine.distributed import SINGLE, World
from gan_engine.run import build_trainer
from gan_engine.run_folder import RunFolder
from gan_engine.spec import Spec, SpecError, parse_spec
from gan_engine.trainer import Trainer
from tests.gan_engine.conftest import Recorder, dataset_for, tiny_spec

STEPS = 6
LOSSES = ("d_loss", "g_loss", "d_real", "d_fake", "d_grad_norm", "g_grad_norm")
PENALTY = "gp"
EXACT = 1e-5  # float reduction order: the all-reduce sums the two halves' gradients


def points_spec(devices: int, **overrides: Any) -> Spec:
    model, loss = overrides.pop("model", {}), overrides.pop("loss", {})
    return tiny_spec(
        "ring8",
        model=model,
        loss=loss,
        training={"steps": STEPS, "devices": devices, "device": "cpu", **overrides},
        monitor={"checkpoint_every": 3, "sample_every": 3, "eval_every": 10_000},
    )


def train_ranks(spec: Spec, out: Path, *extra: str) -> None:
    """``python -m gan_engine train`` in a subprocess: it launches ``devices`` ranks itself."""
    path = out.parent / f"{out.name}.json"
    path.write_text(json.dumps(spec.to_dict()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "gan_engine", "train", str(path), "--out", str(out), *extra]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def curve(rows: list[dict[str, float]]) -> torch.Tensor:
    return torch.tensor([[row[name] for name in LOSSES] for row in rows], dtype=torch.float64)


def folder_curve(out: Path) -> dict[int, dict[str, float]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row for row in rows if "d_loss" in row}


def one_process(spec: Spec, state: dict[str, Any] | None = None) -> tuple[Trainer, Recorder]:
    one = spec.model_copy(update={"training": spec.training.model_copy(update={"devices": 1})})
    recorder = Recorder()
    trainer = Trainer(one, dataset_for(one), callbacks=[recorder])
    if state is not None:
        trainer.load_state_dict(state)
    trainer.fit()
    return trainer, recorder


def assert_same_curve(ranks: dict[int, dict[str, float]], one: Recorder, tol: float) -> None:
    steps = [step for step, _ in one.steps]
    assert sorted(ranks) == steps
    gap = (curve([ranks[s] for s in steps]) - curve([m for _, m in one.steps])).abs().max()
    assert gap <= tol, f"2 ranks differ from 1 process by {gap:.3g} (allowed {tol:g})"


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Spec, Path, Recorder]:
    """A 2-rank run without BatchNorm and its one-process reference: WGAN-GP (its penalty's
    double backward through DDP, its interpolation weights split), PacGAN pairs, instance
    noise."""
    spec = points_spec(2, model={"pack": 2}, loss={"kind": "wgan_gp", "instance_noise": 0.1})
    out = tmp_path_factory.mktemp("ddp") / "run"
    train_ranks(spec, out)
    return spec, out, one_process(spec)[1]


def test_two_ranks_follow_the_one_process_curve_without_batchnorm(two_rank_run) -> None:
    _, out, one = two_rank_run
    ranks = folder_curve(out)
    assert_same_curve(ranks, one, EXACT)
    assert all(abs(ranks[step][PENALTY] - m[PENALTY]) <= EXACT for step, m in one.steps)
    assert (out / "generator.safetensors").exists()  # rank 0 exported
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == [
        "00000003.pt",
        "00000006.pt",
    ]
    codes = [json.loads(line)["code"] for line in (out / "events.jsonl").read_text().splitlines()]
    assert codes.count("checkpoint") == 2  # rank 0 alone wrote the folder


def test_a_two_rank_checkpoint_resumes_in_one_process(two_rank_run) -> None:
    spec, out, one = two_rank_run
    state = load_checkpoint(out / "checkpoints" / "00000003.pt")
    assert state["step"] == 3
    trainer, resumed = one_process(spec, state)
    tail = dict(one.steps[3:])
    assert [step for step, _ in resumed.steps] == sorted(tail)
    gap = (curve([m for _, m in resumed.steps]) - curve(list(tail.values()))).abs().max()
    assert gap <= EXACT
    reference, _ = one_process(spec)
    for mine, theirs in zip(trainer.G.parameters(), reference.G.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, atol=EXACT, rtol=0)


def test_a_one_process_checkpoint_resumes_on_two_ranks(tmp_path: Path) -> None:
    spec = points_spec(2, model={"d_norm": "none"})
    out = tmp_path / "run"
    one = spec.model_copy(update={"training": spec.training.model_copy(update={"devices": 1})})
    first = build_trainer(one, dataset_for(one), callbacks=[RunFolder(out), Recorder(stop_at=3)])
    first.fit()
    assert first.step == 3
    train_ranks(spec, out, "--resume")
    assert_same_curve(folder_curve(out), one_process(spec)[1], EXACT)


def test_sync_batchnorm_makes_g_and_d_batchnorm_agree_with_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))  # the ranks import tests.*
    spec = tiny_spec(
        "digits",
        model={"architecture": "dcgan", "d_norm": "batch"},  # BatchNorm in G and in D
        training={"steps": 4, "devices": 2, "device": "cpu", "sync_batchnorm": True,
                  "mixed_precision": "off"},
        monitor={"checkpoint_every": 4, "sample_every": 4},
    )  # fmt: skip
    trainer, one = one_process(spec)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in trainer.G.modules())
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_dict()))
    args = [str(tmp_path / "spec.json"), str(tmp_path / "steps.json")]
    assert distributed.launch(2, "tests.gan_engine.ddp_ranks", args) == 0
    ranks = {step: metrics for step, metrics in json.loads((tmp_path / "steps.json").read_text())}
    assert_same_curve(ranks, one, EXACT)


def test_ada_and_lecam_adapt_alike_on_every_rank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each rank sees its own half of the batch; ADA's p and LeCam's anchors follow the whole
    batch's statistics, so the ranks keep the same p and anchors (and no collective hangs)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))  # the ranks import tests.*
    spec = tiny_spec(
        "digits",
        model={"architecture": "dcgan", "d_norm": "none"},
        loss={"lecam": 0.3},
        optimizer={"discriminator": {"lr": 0.01}},  # a D sure of the reals at once: p rises
        augment={"kind": "ada", "interval": 1, "ada_kimg": 1, "target": 0.01},
        training={"steps": 6, "devices": 2, "device": "cpu", "mixed_precision": "off"},
        monitor={"checkpoint_every": 6, "sample_every": 6},
    )  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_dict()))
    out = tmp_path / "steps.json"
    assert (
        distributed.launch(2, "tests.gan_engine.ddp_ranks", [str(tmp_path / "spec.json"), str(out)])
        == 0
    )
    rank0, rank1 = (json.loads(out.with_suffix(f".rank{r}.json").read_text()) for r in (0, 1))
    assert rank0 == rank1
    assert 0 < rank0["ada_p"][0] <= 1 and any(rank0["lecam"])
    assert [step for step, _ in json.loads(out.read_text())][-1] == 6


def test_a_translation_trains_on_two_ranks_with_one_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pix2pix on 2 ranks: each rank its half of the pairs, the U-Net's dropout drawn per rank
    (so not one process's run), G and D kept identical on both ranks by DDP."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))  # the ranks import tests.*
    spec = parse_spec({
        "task": "translation",
        "dataset": {"builtin": "edges2fashion"},
        "model": {"image_size": 8, "width": 8},
        "loss": {"r1": 1.0},
        "training": {"steps": 4, "batch_size": 8, "devices": 2, "device": "cpu",
                     "mixed_precision": "off", "ema_decay": 0.9},
        "monitor": {"log_every": 1, "sample_every": 4, "eval_every": 1000,
                    "checkpoint_every": 4, "metrics": []},
    })  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_dict()))
    out = tmp_path / "steps.json"
    args = [str(tmp_path / "spec.json"), str(out)]
    assert distributed.launch(2, "tests.gan_engine.ddp_ranks", args) == 0
    rank0, rank1 = (json.loads(out.with_suffix(f".rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["weights"] == rank1["weights"]
    steps = json.loads(out.read_text())
    assert [step for step, _ in steps] == [1, 2, 3, 4]
    assert all(math.isfinite(m["l1"]) and math.isfinite(m["r1"]) for _, m in steps)


def test_ranks_end_when_their_launcher_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGKILLed torchrun agent cannot stop its ranks: each ends itself (exit_with_launcher)
    instead of waiting in a collective for the group's 2-hour timeout."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))  # the ranks import tests.*
    spec = points_spec(2, steps=10_000_000)
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_dict()))
    args = [str(tmp_path / "spec.json"), str(tmp_path / "out.json")]
    launcher = subprocess.Popen(distributed.launch_command(2, "tests.gan_engine.ddp_ranks", args))
    try:
        ranks = poll_until(lambda: _watching_ranks(launcher.pid))
        launcher.kill()
        launcher.wait()
        poll_until(lambda: not any(_alive(rank) for rank in ranks))
    finally:
        launcher.kill()


def _watching_ranks(pid: int) -> list[int] | None:
    """The launcher's 2 ranks once both run their watch thread (a second thread), else None."""
    ranks = _children(pid)
    threads = [len(list(Path(f"/proc/{rank}/task").glob("*"))) for rank in ranks]
    return ranks if len(ranks) == 2 and all(n >= 2 for n in threads) else None


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def poll_until(condition: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s")


def test_the_world_hands_each_rank_its_contiguous_share() -> None:
    batch = torch.arange(8)
    shares = [World(rank, 2).share(batch) for rank in range(2)]
    assert torch.equal(torch.cat(shares), batch) and shares[0].tolist() == [0, 1, 2, 3]
    assert SINGLE.share(batch) is batch


@pytest.mark.parametrize(
    ("training", "model", "loss", "param"),
    [
        ({"batch_size": 15, "devices": 2}, {}, {}, "training.batch_size"),
        ({"batch_size": 16, "devices": 4}, {"pack": 4}, {}, "training.devices"),
        ({"devices": 2}, {"minibatch": "stddev"}, {}, "model.minibatch"),
        ({"devices": 2}, {}, {"feature_matching": 1.0}, "loss.feature_matching"),
    ],
)
def test_what_ranks_cannot_split_is_refused_naming_the_field(
    training: dict[str, Any], model: dict[str, Any], loss: dict[str, Any], param: str
) -> None:
    with pytest.raises(SpecError) as caught:
        tiny_spec("digits", training=training, model=model, loss=loss)
    assert caught.value.param == param


def test_more_ranks_than_visible_gpus_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(SpecError, match="2 devices were asked for but only 1") as caught:
        distributed.rank_device(torch.device("cuda"))
    assert caught.value.param == "training.devices"
    assert distributed.rank_device(torch.device("cpu")) == torch.device("cpu")


def test_a_nan_on_one_rank_stops_both_at_the_same_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))  # the ranks import tests.*
    spec = points_spec(2, model={"d_norm": "none"})
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_dict()))
    args = [str(tmp_path / "spec.json"), str(tmp_path / "out.json"), "3"]
    command = distributed.launch_command(2, "tests.gan_engine.ddp_ranks", args)
    subprocess.run(command, check=True, timeout=120, capture_output=True)  # a hang: a timeout
    assert json.loads((tmp_path / "out.json").read_text()) == {"diverged_at": 3}


def test_a_finished_rank_ends_without_the_teardown_that_can_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Freeing a gloo group now and then blocks for ever (pytorch#75097): a rank whose work is
    done ends at the group block's end with status 0, and no finaliser runs, however blocked."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))  # the ranks import tests.*
    command = distributed.launch_command(
        2, "tests.gan_engine.blocked_teardown_rank", [str(tmp_path)]
    )
    subprocess.run(command, check=True, timeout=120, capture_output=True)  # a hang: a timeout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0.done", "rank1.done"]
