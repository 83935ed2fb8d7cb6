import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from gan_engine.cli import app

runner = CliRunner()
SPEC = {
    "dataset": {"builtin": "ring8"},
    "model": {"architecture": "mlp", "conditioning": "concat", "width": 32, "latent_dim": 4,
              "mlp_layers": 2},
    "training": {"steps": 6, "batch_size": 32, "seed": 3},
    "monitor": {"log_every": 2, "sample_every": 3, "eval_every": 6, "checkpoint_every": 3,
                "eval_samples": 200},
}  # fmt: skip


def write_spec(path: Path, **changes) -> Path:
    spec = json.loads(json.dumps(SPEC))
    for section, values in changes.items():
        spec.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(spec))
    return path


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def invoke(*args: str | Path, cache: Path) -> object:
    return runner.invoke(app, [*map(str, args), "--cache-dir", str(cache)] if args[0] == "train"
                         else list(map(str, args)))  # fmt: skip


def test_train_writes_the_run_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke("train", write_spec(tmp_path / "s.yaml"), "--out", out, cache=tmp_path)
    assert result.exit_code == 0, result.output
    metrics = jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics if "d_loss" in m] == [2, 4, 6]
    required = {"d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm", "images_per_s"}
    assert required <= set(metrics[0])
    final_eval = [m for m in metrics if "modes_captured" in m]
    assert final_eval and final_eval[-1]["step"] == 6
    events = jsonl(out / "events.jsonl")
    assert all(set(e) == {"step", "level", "code", "message"} for e in events)
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["00000003.png", "00000006.png"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["00000003.pt", "00000006.pt"]
    config = json.loads((out / "config.json").read_text())
    assert config["class_names"] == [f"mode{k}" for k in range(8)]
    assert (out / "generator.safetensors").stat().st_size > 0


def test_resume_continues_to_more_steps_without_duplicate_rows(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert invoke("train", write_spec(tmp_path / "a.yaml"), "--out", out,
                  cache=tmp_path).exit_code == 0  # fmt: skip
    again = invoke("train", write_spec(tmp_path / "a.yaml"), "--out", out, cache=tmp_path)
    assert again.exit_code == 2 and "--resume" in again.output
    longer = write_spec(tmp_path / "b.yaml", training={"steps": 10})
    result = invoke("train", longer, "--out", out, "--resume", cache=tmp_path)
    assert result.exit_code == 0, result.output
    steps = [m["step"] for m in jsonl(out / "metrics.jsonl") if "d_loss" in m]
    assert steps == [2, 4, 6, 8, 10]
    assert json.loads((out / "config.json").read_text())["training_step"] == 10


def test_tensorboard_files_follow_the_run_and_its_resumption(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    first = invoke("train", write_spec(tmp_path / "a.yaml"), "--out", out, "--tensorboard",
                   cache=tmp_path)  # fmt: skip
    assert first.exit_code == 0, first.output
    longer = write_spec(tmp_path / "b.yaml", training={"steps": 10})
    result = invoke("train", longer, "--out", out, "--resume", "--tensorboard", cache=tmp_path)
    assert result.exit_code == 0, result.output

    board = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    board.Reload()
    assert [e.step for e in board.Scalars("losses/d_loss")] == [2, 4, 6, 8, 10]
    assert [e.step for e in board.Scalars("quality/modes_captured")] == [6, 10]
    assert {"discriminator/d_real", "gradients/g_grad_norm", "speed/images_per_s"} <= set(
        board.Tags()["scalars"]
    )
    assert [i.step for i in board.Images("samples")] == [3, 6, 9, 10]


def test_bad_spec_exits_nonzero_with_the_validation_message(tmp_path: Path) -> None:
    bad = write_spec(tmp_path / "bad.yaml", loss={"kind": "hinge", "weight_clip": 0.1})
    result = invoke("train", bad, "--out", tmp_path / "x", cache=tmp_path)
    assert result.exit_code == 2 and "weight_clip" in result.output
    assert not (tmp_path / "x").exists()


def test_sample_png_and_npy(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert invoke("train", write_spec(tmp_path / "s.yaml"), "--out", out,
                  cache=tmp_path).exit_code == 0  # fmt: skip
    npy = tmp_path / "s.npy"
    result = invoke("sample", out, "--n", "5", "--class-names", "mode3", "--seed", "4",
                    "--out", npy, cache=tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.output
    points = np.load(npy)
    assert points.shape == (5, 2) and points.dtype == np.float32
    again = tmp_path / "again.npy"
    invoke("sample", out, "--labels", "3,3,3,3,3", "--seed", "4", "--out", again, cache=tmp_path)
    assert np.array_equal(points, np.load(again))
    png = tmp_path / "grid.png"
    assert invoke("sample", out, "--per-class", "4", "--out", png, cache=tmp_path).exit_code == 0
    assert png.read_bytes().startswith(b"\x89PNG")
    bad = invoke("sample", out, "--class-names", "Sneaker", "--out", png, cache=tmp_path)
    assert bad.exit_code == 2 and "unknown class names" in bad.output


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "gan_engine", "train", str(tmp_path / "missing.yaml"),
         "--out", str(tmp_path / "r")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "cannot read spec" in result.stderr


@pytest.mark.parametrize("suffix", [".jpg", ""])
def test_sample_refuses_unknown_output_types(tmp_path: Path, suffix: str) -> None:
    result = invoke("sample", tmp_path, "--out", tmp_path / f"x{suffix}", cache=tmp_path)
    assert result.exit_code == 2 and ".png or .npy" in result.output


def test_interpolate_writes_a_strip_a_gif_and_npy(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert invoke("train", write_spec(tmp_path / "s.yaml"), "--out", out,
                  cache=tmp_path).exit_code == 0  # fmt: skip
    npy = tmp_path / "walk.npy"
    walk = ["--from-seed", "1", "--to-seed", "2", "--from-class", "mode3", "--to-class", "5"]
    result = invoke("interpolate", out, *walk, "--frames", "6", "--out", npy, cache=tmp_path)
    assert result.exit_code == 0, result.output
    assert np.load(npy).shape == (6, 2)
    bad = invoke("interpolate", out, "--to-seed", "2", "--out", tmp_path / "w.gif", cache=tmp_path)
    assert bad.exit_code == 2 and "2-D points" in bad.output
    assert invoke("interpolate", out, "--out", npy, cache=tmp_path).exit_code == 2
