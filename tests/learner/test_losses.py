"""The losses, against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from casi_learner import losses

LN = math.log


def _t(*values: float, grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, requires_grad=grad)


def _ppo(logp, logp_old, adv, mask, **kw):  # type: ignore[no-untyped-def]
    n = len(mask)
    zeros = torch.zeros(n)
    args = {"clip": 0.2, "value_coef": 0.0, "entropy_coef": 0.0, "clip_value": False} | kw
    return losses.ppo_loss(logp, logp_old, adv, zeros, zeros, zeros, zeros, mask, **args)


def test_clipped_surrogate_both_signs_above_and_below_the_clip() -> None:
    # ratio:  1.5   0.5   1.5   0.5   1.1   (last step masked out, huge advantage)
    # adv:    +1    +1    -1    -1    +2     +1000
    ratios = [1.5, 0.5, 1.5, 0.5, 1.1, 3.0]
    logp = _t(*(LN(r) for r in ratios), grad=True)
    mask = _t(1, 1, 1, 1, 1, 0)
    adv = _t(1, 1, -1, -1, 2, 1000)
    total, stats = _ppo(logp, torch.zeros(6), adv, mask, normalize=False)
    # per step: -min(r A, clip(r) A)
    #   +1, 1.5 -> -min(1.5, 1.2) = -1.2      (clipped, no gradient)
    #   +1, 0.5 -> -min(0.5, 0.8) = -0.5      (unclipped: pessimistic side)
    #   -1, 1.5 -> -min(-1.5, -1.2) = 1.5     (unclipped)
    #   -1, 0.5 -> -min(-0.5, -0.8) = 0.8     (clipped, no gradient)
    #   +2, 1.1 -> -2.2                       (inside the clip range)
    assert stats["policy_loss"].item() == pytest.approx((-1.2 - 0.5 + 1.5 + 0.8 - 2.2) / 5)
    assert total.item() == pytest.approx(stats["policy_loss"].item())
    assert stats["clip_fraction"].item() == pytest.approx(4 / 5)
    kl = [(r - 1) - LN(r) for r in ratios[:5]]
    assert stats["approx_kl"].item() == pytest.approx(sum(kl) / 5, rel=1e-5)
    total.backward()
    # d/dlogp of -A r = -A r (where unclipped), divided by the 5 masked steps
    expected = [0.0, -0.5 / 5, 1.5 / 5, 0.0, -2.2 / 5, 0.0]
    assert logp.grad.tolist() == pytest.approx(expected, abs=1e-6)


def test_advantages_are_normalised_over_the_masked_steps_of_the_minibatch() -> None:
    adv = _t(1, 2, 3, 100)
    mask = _t(1, 1, 1, 0)
    # masked mean 2, sample std sqrt(((-1)^2 + 0 + 1^2) / 2) = 1
    norm = losses.normalize_advantages(adv, mask)
    assert norm[:3].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6)
    logp = _t(0, 0, 0, 0, grad=True)
    total, stats = _ppo(logp, torch.zeros(4), adv, mask)
    total.backward()
    # at ratio 1 the gradient is -A_norm / 3
    assert logp.grad.tolist() == pytest.approx([1 / 3, 0.0, -1 / 3, 0.0], abs=1e-6)
    assert stats["clip_fraction"].item() == 0.0
    assert stats["approx_kl"].item() == 0.0


def test_value_clipping_takes_the_worse_of_clipped_and_unclipped() -> None:
    values, values_old, returns = _t(1, 1), _t(0, 0), _t(2, -1)
    zeros, mask = torch.zeros(2), torch.ones(2)
    # step 0: unclipped (1-2)^2 = 1, clipped (0.2-2)^2 = 3.24 -> 3.24
    # step 1: unclipped (1+1)^2 = 4, clipped (0.2+1)^2 = 1.44 -> 4
    args = {"clip": 0.2, "value_coef": 0.5, "entropy_coef": 0.0}
    total, stats = losses.ppo_loss(
        zeros, zeros, zeros, values, values_old, returns, zeros, mask, clip_value=True, **args
    )
    assert stats["value_loss"].item() == pytest.approx(0.5 * (3.24 + 4) / 2)
    assert total.item() == pytest.approx(0.5 * 0.5 * (3.24 + 4) / 2)
    _, stats = losses.ppo_loss(
        zeros, zeros, zeros, values, values_old, returns, zeros, mask, clip_value=False, **args
    )
    assert stats["value_loss"].item() == pytest.approx(0.5 * (1 + 4) / 2)


def test_total_combines_the_terms_with_their_coefficients() -> None:
    zeros, mask = torch.zeros(2), _t(1, 0)
    entropy, values, returns = _t(2.0, 50.0), _t(3.0, 9.0), _t(1.0, 0.0)
    total, stats = losses.ppo_loss(
        zeros,
        zeros,
        zeros,
        values,
        zeros,
        returns,
        entropy,
        mask,
        clip=0.2,
        value_coef=0.5,
        entropy_coef=0.1,
        clip_value=False,
    )
    assert stats["entropy"].item() == pytest.approx(2.0)
    assert stats["value_loss"].item() == pytest.approx(0.5 * 4.0)
    assert total.item() == pytest.approx(0.0 + 0.5 * 2.0 - 0.1 * 2.0)


def test_a2c_uses_the_advantages_as_given() -> None:
    logp = _t(LN(0.5), LN(0.25), grad=True)
    adv, values, returns = _t(1, -2), _t(0.5, 0.0), _t(1.5, 1.0)
    total, stats = losses.a2c_loss(
        logp,
        logp.detach(),
        adv,
        values,
        returns,
        torch.zeros(2),
        torch.ones(2),
        value_coef=0.5,
        entropy_coef=0.0,
    )
    policy = -(1 * LN(0.5) + -2 * LN(0.25)) / 2
    assert stats["policy_loss"].item() == pytest.approx(policy)
    assert stats["value_loss"].item() == pytest.approx(0.5 * (1 + 1) / 2)
    assert stats["clip_fraction"].item() == 0.0
    total.backward()
    assert logp.grad.tolist() == pytest.approx([-0.5, 1.0])


def test_reinforce_weights_by_the_returns_and_has_no_critic() -> None:
    logp = _t(LN(0.5), LN(0.2), 5.0, grad=True)
    returns, mask = _t(2, 3, 100), _t(1, 1, 0)
    total, stats = losses.reinforce_loss(
        logp, torch.zeros(3), returns, torch.zeros(3), mask, entropy_coef=0.0
    )
    assert stats["policy_loss"].item() == pytest.approx(-(2 * LN(0.5) + 3 * LN(0.2)) / 2)
    assert stats["value_loss"].item() == 0.0
    total.backward()
    assert logp.grad.tolist() == pytest.approx([-1.0, -1.5, 0.0])


def test_reinforce_baseline_detaches_the_values_in_the_policy_term() -> None:
    logp = _t(LN(0.5), LN(0.25), grad=True)
    values, returns = _t(1.0, 4.0, grad=True), _t(3.0, 2.0)
    total, stats = losses.reinforce_baseline_loss(
        logp,
        logp.detach(),
        values,
        returns,
        torch.zeros(2),
        torch.ones(2),
        value_coef=0.5,
        entropy_coef=0.0,
    )
    # weights R - V = [2, -2]
    assert stats["policy_loss"].item() == pytest.approx(-(2 * LN(0.5) - 2 * LN(0.25)) / 2)
    assert stats["value_loss"].item() == pytest.approx(0.5 * (4 + 4) / 2)
    total.backward()
    assert logp.grad.tolist() == pytest.approx([-1.0, 1.0])
    # only the value term reaches the values: 0.5 * (V - R) / 2
    assert values.grad.tolist() == pytest.approx([0.5 * -2 / 2, 0.5 * 2 / 2])


def test_masked_mean_of_an_empty_mask_is_zero() -> None:
    assert losses.masked_mean(_t(1, 2), _t(0, 0)).item() == 0.0


def _params_with_grads() -> list[torch.nn.Parameter]:
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    a.grad, b.grad = _t(3, 0), _t(4)
    return [a, b]


def test_grad_norm_clipping_reports_the_norm_before_and_scales_to_the_limit() -> None:
    params = _params_with_grads()
    assert losses.clip_grad_norm(params, 1.0) == pytest.approx(5.0)
    assert params[0].grad.tolist() == pytest.approx([0.6, 0.0], abs=1e-5)
    assert params[1].grad.tolist() == pytest.approx([0.8], abs=1e-5)
    assert losses.clip_grad_norm(params, 1.0) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("limit", [0.0, -1.0, 10.0])
def test_grad_norm_clipping_leaves_small_or_unlimited_gradients_alone(limit: float) -> None:
    params = _params_with_grads()
    assert losses.clip_grad_norm(params, limit) == pytest.approx(5.0)
    assert params[0].grad.tolist() == [3.0, 0.0] and params[1].grad.tolist() == [4.0]
