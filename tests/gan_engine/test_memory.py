import pytest

from gan_engine.memory import estimate_training_memory, format_bytes
from gan_engine.spec import parse_spec

FASHION = {"builtin": "fashion-mnist"}


def estimate(**sections: dict) -> int:
    spec = parse_spec({"dataset": FASHION, **sections})
    size = spec.model.image_size or 32
    return estimate_training_memory(
        spec, sample_shape=(1, size, size), num_classes=10, num_samples=60_000
    ).total_bytes


def test_the_default_recipe_is_small_and_the_hostile_one_is_huge() -> None:
    assert estimate() < 1 << 30
    hostile = estimate(model={"width": 512, "image_size": 64}, training={"batch_size": 4096})
    assert hostile > 64 << 30


def test_activations_grow_with_the_batch_and_penalties_cost_more() -> None:
    small, large = estimate(training={"batch_size": 32}), estimate(training={"batch_size": 256})
    assert large > 2 * small
    assert estimate(loss={"kind": "wgan_gp"}) > estimate(loss={"kind": "wasserstein"})


def test_largest_batch_within_a_budget_fits_it() -> None:
    spec = parse_spec({"dataset": FASHION, "training": {"batch_size": 512}})
    found = estimate_training_memory(spec, sample_shape=(1, 32, 32), num_classes=10,
                                     num_samples=60_000)  # fmt: skip
    budget = found.total_bytes // 2
    batch = found.largest_batch_within(budget)
    assert 2 <= batch < 512
    refit = parse_spec({"dataset": FASHION, "training": {"batch_size": batch}})
    again = estimate_training_memory(refit, sample_shape=(1, 32, 32), num_classes=10,
                                     num_samples=60_000)  # fmt: skip
    assert again.total_bytes <= budget


@pytest.mark.parametrize(
    ("count", "text"), [(512, "512 B"), (3 << 20, "3.0 MiB"), (5 << 30, "5.0 GiB")]
)
def test_format_bytes(count: int, text: str) -> None:
    assert format_bytes(count) == text


def test_memory_mapped_data_costs_no_data_bytes() -> None:
    spec = parse_spec({"dataset": FASHION})
    shape = (3, 32, 32)
    loaded = estimate_training_memory(
        spec, sample_shape=shape, num_classes=0, num_samples=1_000_000
    )
    mapped = estimate_training_memory(
        spec, sample_shape=shape, num_classes=0, num_samples=1_000_000, mapped=True
    )
    assert loaded.data_bytes == 1_000_000 * 3 * 32 * 32 and mapped.data_bytes == 0
    assert loaded.total_bytes - mapped.total_bytes == loaded.data_bytes
