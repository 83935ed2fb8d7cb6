import json

import pytest

from gan_engine.spec import PRESETS, Spec, SpecError, load_spec, parse_spec

DIGITS = {"builtin": "digits"}


def errors_of(data: dict) -> str:
    return str(spec_error(data))


def spec_error(data: dict) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    return caught.value


def test_minimal_spec_fills_every_default() -> None:
    spec = parse_spec({"dataset": DIGITS})
    assert spec.model.architecture == "dcgan"
    assert spec.loss.kind == "non_saturating"
    assert spec.model.d_norm == "batch"  # "auto" is resolved at validation
    stored = spec.to_dict()
    assert stored["training"]["steps"] == 20000
    assert parse_spec(stored) == spec  # the resolved form is itself a valid spec


def test_plain_model_validate_is_the_resolved_form() -> None:
    """No second step to forget: WGAN-GP gets its penalty and a per-sample norm in D."""
    spec = Spec.model_validate({"dataset": DIGITS, "loss": {"kind": "wgan_gp"}})
    assert spec.loss.gradient_penalty == 10.0 and spec.model.d_norm == "layer"
    wgan = Spec.model_validate({"dataset": DIGITS, "loss": {"kind": "wasserstein"}})
    assert wgan.loss.weight_clip == 0.01 and wgan.model.d_norm == "batch"
    assert Spec.model_validate({"dataset": DIGITS, "loss": {"r1": 0.1}}).model.d_norm == "layer"


def test_unknown_keys_are_rejected_with_their_path() -> None:
    message = errors_of({"dataset": DIGITS, "model": {"architecure": "mlp"}})
    assert "model.architecure" in message and "Extra inputs" in message


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_validates(name: str) -> None:
    assert parse_spec({"preset": name, "dataset": DIGITS}).preset == name


def test_preset_fills_and_explicit_fields_win() -> None:
    spec = parse_spec(
        {"preset": "wgan-gp", "dataset": DIGITS, "optimizer": {"generator": {"lr": 3e-4}}}
    )
    assert spec.loss.kind == "wgan_gp" and spec.loss.gradient_penalty == 10.0
    assert spec.optimizer.n_critic == 5
    assert spec.optimizer.generator.lr == 3e-4  # explicit
    assert spec.optimizer.generator.betas == (0.0, 0.9)  # from the preset, same sub-object
    assert spec.optimizer.discriminator.lr == 1e-4
    assert spec.model.d_norm == "layer"  # no batch norm in a gradient-penalised critic


def test_wgan_preset_is_the_papers_recipe() -> None:
    spec = parse_spec({"preset": "wgan", "dataset": DIGITS})
    assert spec.loss.kind == "wasserstein" and spec.loss.weight_clip == 0.01
    assert spec.optimizer.discriminator.kind == "rmsprop"
    assert spec.optimizer.discriminator.lr == 5e-5 and spec.optimizer.n_critic == 5


def test_sngan_and_cgan_presets() -> None:
    sngan = parse_spec({"preset": "sngan", "dataset": DIGITS})
    assert sngan.model.spectral_norm and sngan.loss.kind == "hinge" and sngan.model.d_norm == "none"
    assert parse_spec({"preset": "cgan", "dataset": DIGITS}).model.conditioning == "concat"


def test_unknown_preset_names_the_choices() -> None:
    assert "preset" in errors_of({"preset": "biggan", "dataset": DIGITS})


@pytest.mark.parametrize(
    ("data", "param", "hint"),
    [
        ({"loss": {"kind": "hinge", "weight_clip": 0.01}}, "loss.weight_clip", "wasserstein"),
        ({"loss": {"kind": "hinge", "gradient_penalty": 10.0}}, "loss.gradient_penalty", "r1"),
        ({"loss": {"kind": "hinge", "label_smoothing": 0.1}}, "loss.label_smoothing", "non_sat"),
        ({"model": {"image_size": 28}}, "model.image_size", "8, 16, 32 or 64"),
        ({"optimizer": {"n_critic": 0}}, "optimizer.n_critic", "greater than or equal to 1"),
        ({"optimizer": {"generator": {"lr": -1.0}}}, "optimizer.generator.lr", "> 0"),
        ({"optimizer": {"generator": {"betas": [0.5, 1.5]}}}, "optimizer.generator.betas", "[0,"),
        ({"model": {"pack": 3, "conditioning": "projection"}}, "model.pack", "'concat'"),
        ({"model": {"pack": 3}, "training": {"batch_size": 64}}, "training.batch_size", "pack"),
        ({"training": {"batch_size": 1}}, "training.batch_size", "greater than or equal"),
        ({"model": {"minibatch_kernels": 25}}, "model.minibatch_kernels", "'discrimination'"),
        ({"dataset": {"builtin": "ring8"}}, "model.architecture", "mlp"),
    ],
)
def test_incompatible_combinations_name_the_field_as_data_and_the_fix(
    data: dict, param: str, hint: str
) -> None:
    error = spec_error({"dataset": DIGITS, **data})
    assert error.param == param  # the field travels as data, not inside the text
    assert hint in str(error)


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"model": {"width": True}}, "model.width"),  # a boolean is not an integer
        ({"model": {"width": 64.0}}, "model.width"),
        ({"model": {"width": "64"}}, "model.width"),
        ({"loss": {"r1": float("nan")}}, "loss.r1"),
        ({"loss": {"r1": float("inf")}}, "loss.r1"),
        ({"optimizer": {"generator": {"lr": True}}}, "optimizer.generator.lr"),
        ({"training": {"max_runtime_s": float("inf")}}, "training.max_runtime_s"),
        ({"model": {"spectral_norm": 1}}, "model.spectral_norm"),
        ({"dataset": {"id": "ds_\x00; drop"}}, "dataset.id"),
    ],
)
def test_numbers_are_strict_and_finite(data: dict, param: str) -> None:
    assert spec_error({"dataset": DIGITS, **data}).param == param


def test_a_flood_of_problems_is_summarised() -> None:
    error = spec_error({"dataset": DIGITS, "model": {f"x{k}": k for k in range(50)}})
    assert len(error.problems) == 5 and error.total == 50
    assert "and 45 more problem(s)" in str(error)


@pytest.mark.parametrize(
    ("dataset", "architecture", "size"),
    [
        ({"builtin": "fashion-mnist"}, "dcgan", 32),  # 28 -> the nearest conv size
        ({"builtin": "digits"}, "dcgan", 8),
        ({"builtin": "digits"}, "mlp", 8),
        ({"builtin": "mnist"}, "mlp", 28),  # an mlp takes any size
        ({"path": "pack.npz"}, "dcgan", None),  # unknown until the pack is read
    ],
)
def test_image_size_follows_the_data_when_unset(
    dataset: dict, architecture: str, size: int | None
) -> None:
    spec = parse_spec({"dataset": dataset, "model": {"architecture": architecture}})
    assert spec.model.image_size == size
    assert spec.needs_image_size == (size is None)


@pytest.mark.parametrize(
    ("side", "architecture", "size"),
    [(16, "dcgan", 16), (12, "dcgan", 16), (100, "resnet", 64), (5, "dcgan", 8), (40, "mlp", 40)],
)
def test_fitted_to_picks_the_nearest_supported_size(
    side: int, architecture: str, size: int
) -> None:
    spec = parse_spec({"dataset": {"path": "p.npz"}, "model": {"architecture": architecture}})
    assert spec.fitted_to(side, side).model.image_size == size
    explicit = parse_spec({"dataset": {"path": "p.npz"}, "model": {"image_size": 32}})
    assert explicit.fitted_to(side, side).model.image_size == 32  # an explicit size wins


def test_points_need_the_mlp_architecture() -> None:
    message = errors_of({"dataset": {"builtin": "ring8"}})
    assert "mlp" in message and "ring8" in message
    assert parse_spec({"dataset": {"builtin": "ring8"}, "model": {"architecture": "mlp"}})


def test_vocabularies_are_declared_once() -> None:
    from typing import get_args

    from gan_engine.losses import LOSSES, LossKind
    from gan_engine.spec import ARCHITECTURES, IMAGE_SIZES, LOSS_KINDS, ModelSpec

    assert tuple(LOSSES) == get_args(LossKind) == LOSS_KINDS
    assert set(IMAGE_SIZES) == set(ARCHITECTURES)
    schema = ModelSpec.model_json_schema()["properties"]["architecture"]
    assert tuple(schema["enum"]) == ARCHITECTURES


def test_dataset_needs_exactly_one_source() -> None:
    assert "exactly one" in errors_of({"dataset": {"builtin": "digits", "path": "x.npz"}})
    assert "exactly one" in errors_of({"dataset": {}})


def test_loads_yaml_and_json(tmp_path) -> None:
    (tmp_path / "s.yaml").write_text("preset: dcgan\ndataset: {builtin: digits}\n")
    (tmp_path / "s.json").write_text(json.dumps({"preset": "dcgan", "dataset": DIGITS}))
    assert load_spec(tmp_path / "s.yaml") == load_spec(tmp_path / "s.json")


def test_unreadable_files_give_clear_errors(tmp_path) -> None:
    (tmp_path / "bad.yaml").write_text("dataset: [unclosed\n")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(SpecError, match="not valid"):
        load_spec(tmp_path / "bad.yaml")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(tmp_path / "list.yaml")
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")


def test_json_schema_is_available_for_openapi() -> None:
    schema = Spec.model_json_schema()
    assert "dataset" in schema["required"]
