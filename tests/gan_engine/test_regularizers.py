import pytest
import torch

from gan_engine import regularizers


def linear_critic(weights: torch.Tensor):
    return lambda x: (x.flatten(1) * weights).sum(1)


def test_gradient_penalty_matches_hand_computation() -> None:
    # For a linear critic D(x) = w.x the gradient is w everywhere: GP = lambda (|w| - 1)^2.
    w = torch.tensor([3.0, 4.0])
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    gp = regularizers.gradient_penalty(linear_critic(w), real, fake, weight=10.0)
    assert gp.item() == pytest.approx(10.0 * (5.0 - 1.0) ** 2)


def test_gradient_penalty_uses_interpolates_for_nonlinear_critic() -> None:
    critic = lambda x: (x**2).sum(1)  # noqa: E731 - grad = 2x, |grad| = 2|x|
    real = torch.tensor([[1.0, 0.0]])
    fake = torch.tensor([[1.0, 0.0]])  # every interpolate is (1, 0): |grad| = 2
    assert regularizers.gradient_penalty(critic, real, fake, weight=1.0).item() == pytest.approx(
        1.0
    )


def test_gradient_penalty_with_packing_takes_one_norm_per_pack() -> None:
    w = torch.tensor([3.0, 4.0, 0.0, 0.0])

    def packed_critic(x: torch.Tensor) -> torch.Tensor:  # pairs of 2-D points -> one output
        return (x.reshape(-1, 4) * w).sum(1)

    gp = regularizers.gradient_penalty(packed_critic, torch.randn(4, 2), torch.randn(4, 2),
                                       weight=1.0, pack=2)  # fmt: skip
    assert gp.item() == pytest.approx(16.0)


def test_r1_matches_hand_computation() -> None:
    w = torch.tensor([1.0, 2.0])
    r1 = regularizers.r1_penalty(linear_critic(w), torch.randn(5, 2), gamma=4.0)
    assert r1.item() == pytest.approx(4.0 / 2 * 5.0)


def test_penalties_are_differentiable_wrt_critic_parameters() -> None:
    w = torch.tensor([0.3, -0.2], requires_grad=True)
    critic = lambda x: torch.tanh(x @ w)  # noqa: E731
    penalty = regularizers.r1_penalty(critic, torch.randn(4, 2), gamma=1.0)
    penalty.backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()


def test_feature_matching_and_instance_noise_and_clipping() -> None:
    real, fake = torch.ones(4, 3), torch.zeros(4, 3)
    assert regularizers.feature_matching(real, fake).item() == pytest.approx(3.0)
    assert regularizers.instance_noise_std(0.1, 0, 100) == pytest.approx(0.1)
    assert regularizers.instance_noise_std(0.1, 50, 100) == pytest.approx(0.05)
    assert regularizers.instance_noise_std(0.1, 100, 100) == 0.0
    layer = torch.nn.Linear(3, 3)
    torch.nn.init.constant_(layer.weight, 5.0)
    regularizers.clip_weights(layer, 0.01)
    assert layer.weight.abs().max().item() == pytest.approx(0.01)


def test_lecam_matches_hand_computation_and_its_anchors_follow_an_ema() -> None:
    lecam = regularizers.LeCam(0.5, torch.device("cpu"))
    real, fake = torch.tensor([[2.0], [0.0]]), torch.tensor([[-1.0], [1.0]])
    # first batch: anchors are its means, real 1.0 and fake 0.0
    value = lecam(real, fake)
    pushed_real = (torch.relu(real - 0.0) ** 2).mean()  # reals held near the fake anchor
    pushed_fake = (torch.relu(1.0 - fake) ** 2).mean()  # fakes held near the real anchor
    assert value.item() == pytest.approx(0.5 * (pushed_real + pushed_fake).item())
    lecam(torch.full((2, 1), 3.0), torch.full((2, 1), -2.0))
    assert lecam.anchors.tolist() == pytest.approx([0.99 * 1.0 + 0.01 * 3.0, 0.99 * 0 - 0.02])
    restored = regularizers.LeCam(0.5, torch.device("cpu"))
    restored.load_state_dict(lecam.state_dict())
    assert torch.equal(restored.anchors, lecam.anchors) and restored.updates == 2


def test_lecam_gradient_reaches_d_s_outputs_not_its_anchors() -> None:
    lecam = regularizers.LeCam(1.0, torch.device("cpu"))
    real = torch.tensor([[2.0], [1.0]], requires_grad=True)
    fake = torch.tensor([[0.5], [-1.0]], requires_grad=True)
    lecam(real, fake).backward()
    assert real.grad is not None and fake.grad is not None
    assert real.grad.abs().sum() > 0 and fake.grad.abs().sum() > 0
    assert not lecam.anchors.requires_grad
