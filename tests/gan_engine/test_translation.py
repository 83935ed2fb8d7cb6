"""Task 'translation' (pix2pix): the spec, paired data, the nets, training, export and the CLI."""

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from gan_engine.artifacts import ArtifactError, GeneratorArtifact
from gan_engine.checkpoint import load_checkpoint
from gan_engine.cli import app
from gan_engine.data import DatasetError, load_dataset
from gan_engine.data.builtins import load_digits
from gan_engine.data.packs import read_pack, write_pack
from gan_engine.data.paired import downsampled_x4, edge_map, photo_crops
from gan_engine.evaluation.translation import TranslationEvaluator, pixel_metrics
from gan_engine.nets.unet import PatchGANDiscriminator, UNetGenerator
from gan_engine.run import export_files
from gan_engine.spec import SpecError, parse_spec
from gan_engine.trainer import Trainer

from .conftest import Recorder

runner = CliRunner()


@pytest.fixture(scope="module")
def edge_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's digits (8×8) as targets, their edge maps as inputs, as a paired pack."""
    digits = load_digits("train")
    path = tmp_path_factory.mktemp("packs") / "edges2digits.npz"
    targets = digits.data[:400, 0].numpy()
    inputs = edge_map(digits.data[:400])[:, 0].numpy()
    write_pack(path, targets, digits.labels[:400].numpy(), inputs=inputs)
    return path


def translation_spec(path: Path | None = None, **overrides: Any) -> Any:
    data: dict[str, Any] = {
        "task": "translation",
        "dataset": {"path": str(path)} if path else {"builtin": "edges2fashion"},
        "model": {"image_size": 8, "width": 8},
        "training": {"steps": 4, "batch_size": 8, "ema_decay": 0.9, "seed": 5,
                     "mixed_precision": "off"},
        "monitor": {"log_every": 1, "sample_every": 2, "eval_every": 1000, "checkpoint_every": 2,
                    "samples_per_class": 3, "eval_samples": 100, "metrics": []},
    }  # fmt: skip
    for section, values in overrides.items():
        data[section] = {**data.get(section, {}), **values} if isinstance(values, dict) else values
    return parse_spec(data)


def trainer_for(spec: Any, **kwargs: Any) -> Trainer:
    return Trainer(spec, load_dataset(spec.dataset), **kwargs)


# --- the spec ----------------------------------------------------------------------------------


def test_translation_resolves_unet_and_l1_100_and_generation_keeps_neither() -> None:
    spec = parse_spec({"task": "translation", "dataset": {"builtin": "superres-x4-fashion"}})
    assert (spec.model.architecture, spec.loss.l1, spec.loss.adversarial) == ("unet", 100.0, 1.0)
    assert spec.model.image_size == 32  # 28x28 follows the data
    generation = parse_spec({"dataset": {"builtin": "digits"}})
    assert (generation.task, generation.loss.l1) == ("generation", None)
    again = parse_spec(spec.to_dict())  # the resolved form is a fixed point
    assert again == spec


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"dataset": {"builtin": "edges2fashion"}}, "dataset.builtin"),
        ({"task": "translation", "dataset": {"builtin": "fashion-mnist"}}, "dataset.builtin"),
        ({"task": "translation", "dataset": {"builtin": "edges2fashion"},
          "model": {"architecture": "dcgan"}}, "model.architecture"),
        ({"dataset": {"builtin": "digits"}, "model": {"architecture": "unet"}},
         "model.architecture"),
        ({"dataset": {"builtin": "digits"}, "loss": {"l1": 10.0}}, "loss.l1"),
        ({"dataset": {"builtin": "digits"}, "loss": {"adversarial": 0.0}}, "loss.adversarial"),
        ({"task": "translation", "dataset": {"builtin": "edges2fashion"},
          "model": {"conditioning": "concat"}}, "model.conditioning"),
        ({"task": "translation", "dataset": {"builtin": "edges2fashion"},
          "loss": {"l1": -1.0}}, "loss.l1"),
        ({"task": "translate", "dataset": {"builtin": "edges2fashion"}}, "task"),
    ],
)  # fmt: skip
def test_spec_errors_name_the_field(data: dict, param: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    assert caught.value.param == param, caught.value.problems


# --- paired data -------------------------------------------------------------------------------


def test_edge_map_marks_the_outline_and_superres_keeps_the_size() -> None:
    square = torch.zeros(1, 1, 16, 16, dtype=torch.uint8)
    square[..., 4:12, 4:12] = 255
    edges = edge_map(square)
    assert edges.shape == (1, 1, 16, 16) and set(edges.unique().tolist()) == {0, 255}
    assert edges[0, 0, 8, 8] == 0 and edges[0, 0, 0, 0] == 0 and edges[0, 0, 4, 8] == 255
    low = downsampled_x4(torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16))
    assert low.shape == (1, 1, 16, 16) and low.dtype == torch.uint8
    rgb = downsampled_x4(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert rgb.shape == (2, 3, 32, 32)


def test_photo_crops_train_and_test_never_overlap() -> None:
    train, test = photo_crops("train"), photo_crops("test")
    assert train.data.shape[1:] == (3, 64, 64) and test.data.shape[1:] == (3, 64, 64)
    assert (len(train), len(test)) == (360, 72)
    seen = {bytes(crop.numpy()) for crop in train.data}
    assert not any(bytes(crop.numpy()) in seen for crop in test.data)


def test_builtin_pairs_are_derived_after_fitting(data_dir: Path) -> None:
    spec = translation_spec(model={"image_size": 16})
    dataset = Trainer(spec, load_dataset(spec.dataset, data_dir=data_dir)).dataset
    assert dataset.data.shape[1:] == dataset.inputs.shape[1:] == (1, 16, 16)
    assert torch.equal(dataset.inputs[:5], edge_map(dataset.data[:5]))
    sr = parse_spec({"task": "translation", "dataset": {"builtin": "superres-x4-photos"},
                     "model": {"image_size": 16}})  # fmt: skip
    paired = Trainer(sr, load_dataset(sr.dataset)).dataset
    assert paired.super_resolution and paired.inputs.shape[1:] == (3, 16, 16)


def test_paired_pack_round_trip_and_its_errors(tmp_path: Path, edge_pack: Path) -> None:
    pack = read_pack(edge_pack)
    assert pack.images.shape == pack.inputs.shape == (400, 1, 8, 8)
    small = tmp_path / "sr.npz"
    write_pack(small, np.zeros((3, 16, 16, 3), np.uint8), inputs=np.zeros((3, 4, 4, 3), np.uint8))
    dataset = load_dataset(parse_spec({"task": "translation", "dataset": {"path": str(small)}})
                           .dataset)  # fmt: skip
    assert dataset.super_resolution and dataset.inputs.shape == (3, 3, 4, 4)
    with pytest.raises(DatasetError, match="one target per input"):
        write_pack(tmp_path / "x.npz", np.zeros((3, 8, 8), np.uint8),
                   inputs=np.zeros((2, 8, 8), np.uint8))  # fmt: skip
    half = tmp_path / "half.npz"
    np.savez(half, inputs=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match="both 'inputs' and 'targets'"):
        read_pack(half)
    both = tmp_path / "both.npz"
    np.savez(both, images=np.zeros((2, 8, 8), np.uint8), inputs=np.zeros((2, 8, 8), np.uint8),
             targets=np.zeros((2, 8, 8), np.uint8))  # fmt: skip
    with pytest.raises(DatasetError, match="not both"):
        read_pack(both)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, inputs=np.zeros((2, 8, 8), np.float32), targets=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match="'inputs' must be uint8"):
        read_pack(wrong)


# --- the nets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_unet_and_patchgan_shapes(size: int) -> None:
    g = UNetGenerator(1, 3, size, width=4)
    x = torch.rand(2, 1, size, size) * 2 - 1
    y = g(x)
    assert y.shape == (2, 3, size, size) and y.abs().max() <= 1
    d = PatchGANDiscriminator(1, 3, size, width=4, d_norm="batch")
    patches = (size // 8) ** 2 if size == 64 else 16
    assert d(x, y).shape == (2, patches)


def test_unet_dropout_is_its_noise_in_training_and_off_in_eval() -> None:
    g = UNetGenerator(1, 1, 16, width=4)
    x = torch.rand(2, 1, 16, 16)
    assert not torch.equal(g(x), g(x))
    g.eval()
    assert torch.equal(g(x), g(x))


# --- training ----------------------------------------------------------------------------------


def test_tiny_run_logs_l1_and_grids_show_input_output_target(edge_pack: Path) -> None:
    recorder = Recorder()
    trainer = trainer_for(translation_spec(edge_pack), callbacks=[recorder])
    trainer.fit()
    metrics = recorder.steps[-1][1]
    assert {"l1", "g_adv_loss", "g_loss", "d_loss", "p_real", "d_grad_norm"} <= set(metrics)
    _, png = recorder.samples[0]
    image = Image.open(io.BytesIO(png))
    assert image.size == (3 * (8 + 2) + 2, 3 * (8 + 2) + 2)  # 3 columns, samples_per_class rows


def test_l1_only_trains_no_discriminator(edge_pack: Path) -> None:
    recorder = Recorder()
    trainer = trainer_for(translation_spec(edge_pack, loss={"adversarial": 0.0}),
                          callbacks=[recorder])  # fmt: skip
    before = {k: v.clone() for k, v in trainer.D.state_dict().items()}
    trainer.fit()
    assert "d_loss" not in recorder.steps[-1][1] and "g_adv_loss" not in recorder.steps[-1][1]
    assert recorder.steps[-1][1]["g_loss"] == pytest.approx(100 * recorder.steps[-1][1]["l1"])
    assert all(torch.equal(before[k], v) for k, v in trainer.D.state_dict().items())


def test_translation_training_is_deterministic(edge_pack: Path) -> None:
    spec = translation_spec(edge_pack)
    a = trainer_for(spec)  # the trainer seeds torch's RNG (dropout draws from it) when built
    a.fit()
    b = trainer_for(spec)
    b.fit()
    for (name, pa), pb in zip(a.G.state_dict().items(), b.G.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize(
    "overrides",
    [{}, {"loss": {"kind": "hinge", "r1": 1.0}}, {"training": {"mixed_precision": "bf16"}}],
)
def test_translation_resume_is_bit_identical(edge_pack: Path, overrides: dict) -> None:
    training = {"steps": 6, **overrides.pop("training", {})}
    spec = translation_spec(edge_pack, training=training, monitor={"checkpoint_every": 3},
                            **overrides)  # fmt: skip
    recorder = Recorder()
    uninterrupted = trainer_for(spec, callbacks=[recorder])
    uninterrupted.fit()
    resumed = trainer_for(spec)
    resumed.load_state_dict(load_checkpoint(recorder.checkpoints[3]))
    resumed.fit()
    for part in ("G", "D", "sampling_generator"):
        want, got = getattr(uninterrupted, part).state_dict(), getattr(resumed, part).state_dict()
        for name in want:
            assert torch.equal(want[name], got[name]), f"{part}.{name}"


def test_a_generation_spec_on_paired_data_is_refused(edge_pack: Path) -> None:
    spec = parse_spec({"dataset": {"path": str(edge_pack)}, "model": {"image_size": 8}})
    with pytest.raises(SpecError) as caught:
        trainer_for(spec)
    assert caught.value.param == "dataset"


# --- metrics -----------------------------------------------------------------------------------


def test_pixel_metrics_of_a_perfect_and_a_blurred_translation() -> None:
    targets = torch.rand(8, 1, 16, 16) * 2 - 1
    perfect = pixel_metrics(targets, targets)
    assert perfect["l1"] == 0 and perfect["ssim"] == pytest.approx(1.0)
    assert perfect["hf_energy_ratio"] == pytest.approx(1.0)
    blurred = pixel_metrics(torch.nn.functional.avg_pool2d(targets, 3, 1, 1), targets)
    assert blurred["hf_energy_ratio"] < 0.5 and blurred["psnr"] < perfect["psnr"]


def test_evaluation_reports_fid_class_accuracy_and_the_bicubic_baseline(tmp_path: Path) -> None:
    digits = load_digits("train")
    pack = tmp_path / "sr-digits.npz"
    low = torch.nn.functional.avg_pool2d(digits.data.float(), 2).round().to(torch.uint8)
    write_pack(pack, digits.data[:, 0].numpy(), digits.labels.numpy(), inputs=low[:, 0].numpy())
    spec = translation_spec(pack, monitor={"metrics": ["fid", "class_accuracy"]})
    trainer = trainer_for(spec)
    evaluator = TranslationEvaluator(spec=trainer.spec, dataset=trainer.dataset, cache=None,
                                     device=trainer.device)  # fmt: skip
    trainer.evaluator = evaluator
    metrics = trainer.evaluate()
    expected = {"l1", "psnr", "ssim", "hf_energy_ratio", "fid", "fid_real_baseline",
                "class_accuracy", "evaluator_accuracy", "bicubic_l1", "bicubic_psnr",
                "bicubic_ssim", "bicubic_fid", "bicubic_class_accuracy"}  # fmt: skip
    assert expected <= set(metrics)
    assert metrics["bicubic_psnr"] > metrics["psnr"]  # an untrained G is worse than bicubic
    assert metrics["evaluator_accuracy"] > 0.8


# --- export and the CLI ------------------------------------------------------------------------


def test_artifact_translates_and_refuses_to_sample(tmp_path: Path, edge_pack: Path) -> None:
    trainer = trainer_for(translation_spec(edge_pack))
    result = trainer.fit()
    files = export_files(trainer, result)
    config = json.loads(files["config.json"])
    assert (config["task"], config["input_shape"]) == ("translation", [1, 8, 8])
    artifact = GeneratorArtifact.from_bytes(files["generator.safetensors"], files["config.json"])
    inputs = trainer.dataset.inputs[:4]
    out = artifact.translate(inputs[:, 0].numpy())
    assert out.data.shape == (4, 8, 8) and out.data.dtype == np.uint8
    from gan_engine.images import to_uint8

    assert np.array_equal(out.data, to_uint8(trainer.translate(inputs)))
    bigger = artifact.translate(np.zeros((2, 20, 20, 3), np.uint8))  # resized, made grey
    assert bigger.data.shape == (2, 8, 8)
    with pytest.raises(ArtifactError) as caught:
        artifact.sample(n=4)
    assert caught.value.param == "model"


def test_cli_trains_and_translates_png_and_npy(tmp_path: Path, edge_pack: Path) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(translation_spec(edge_pack).to_dict()))
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(spec_path), "--out", str(out),
                                 "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert result.exit_code == 0, result.output
    image = tmp_path / "edge.png"
    Image.fromarray(read_pack(edge_pack).inputs[0, 0]).save(image)
    result = runner.invoke(app, ["translate", str(out), "--input", str(image),
                                 "--out", str(tmp_path / "one.png")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "one.png").size == (8, 8)
    batch = tmp_path / "batch.npy"
    np.save(batch, read_pack(edge_pack).inputs[:5, 0])
    result = runner.invoke(app, ["translate", str(out), "--input", str(batch),
                                 "--out", str(tmp_path / "five.npy")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "five.npy").shape == (5, 8, 8)
    result = runner.invoke(app, ["sample", str(out), "--out", str(tmp_path / "s.png")])
    assert result.exit_code == 2 and "translation model" in result.output
