import json

import pytest

from gan_engine.spec import PRESETS, Spec, SpecError, load_spec, parse_spec

DIGITS = {"builtin": "digits"}


def errors_of(data: dict) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    return str(caught.value)


def test_minimal_spec_fills_every_default() -> None:
    spec = parse_spec({"dataset": DIGITS})
    assert spec.model.architecture == "dcgan"
    assert spec.loss.kind == "non_saturating"
    assert spec.model.d_norm == "batch"  # "auto" is resolved in the normalised form
    stored = spec.to_dict()
    assert stored["training"]["steps"] == 20000
    assert parse_spec(stored) == spec  # the normalised form is itself a valid spec


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
    ("data", "field", "hint"),
    [
        ({"loss": {"kind": "hinge", "weight_clip": 0.01}}, "weight_clip", "wasserstein"),
        ({"loss": {"kind": "hinge", "gradient_penalty": 10}}, "gradient_penalty", "r1"),
        ({"loss": {"kind": "hinge", "label_smoothing": 0.1}}, "label_smoothing", "non_saturating"),
        ({"model": {"image_size": 28}}, "image_size", "8, 16, 32 or 64"),
        ({"optimizer": {"n_critic": 0}}, "n_critic", "greater than or equal to 1"),
        ({"optimizer": {"generator": {"lr": -1}}}, "optimizer.generator.lr", "> 0"),
        ({"optimizer": {"generator": {"betas": [0.5, 1.5]}}}, "betas", "[0, 1)"),
        ({"model": {"pack": 3, "conditioning": "projection"}}, "pack", "'concat'"),
        ({"model": {"pack": 3}, "training": {"batch_size": 64}}, "multiple of", "pack"),
        ({"training": {"batch_size": 1}}, "training.batch_size", "greater than or equal"),
        ({"model": {"minibatch_kernels": 25}}, "minibatch_kernels", "'discrimination'"),
    ],
)
def test_incompatible_combinations_name_the_field_and_the_fix(
    data: dict, field: str, hint: str
) -> None:
    message = errors_of({"dataset": DIGITS, **data})
    assert field in message and hint in message


def test_points_need_the_mlp_architecture() -> None:
    message = errors_of({"dataset": {"builtin": "ring8"}})
    assert "mlp" in message and "ring8" in message
    assert parse_spec({"dataset": {"builtin": "ring8"}, "model": {"architecture": "mlp"}})


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
