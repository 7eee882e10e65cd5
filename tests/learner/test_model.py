"""The actor-critic: joint log-prob and entropy over heads, initialisation, recurrence."""

from __future__ import annotations

import math

import pytest
import torch
from casi_learner.model import ActorCritic, joint_entropy, joint_log_prob
from casi_learner.torch_net import TorchNet
from casi_proto.compliance import NetContract
from casi_proto.sizes import n_params
from torch import nn


def _model(seed: int = 0, **kw: object) -> ActorCritic:
    args: dict = {"obs_dim": 6, "head_sizes": [4, 5, 5], "hidden_sizes": [16, 12]} | kw
    model = ActorCritic(**args)
    model.initialise(torch.Generator().manual_seed(seed))
    return model


def test_entropy_of_uniform_heads_is_the_sum_of_their_entropies() -> None:
    logits = torch.zeros(2, 8)
    entropy = joint_entropy(logits, [3, 5])
    assert entropy.tolist() == pytest.approx([math.log(3) + math.log(5)] * 2, abs=1e-6)


def test_entropy_of_a_skewed_head_plus_a_uniform_one() -> None:
    # head 0: logits [0, ln 3] -> p = [1/4, 3/4]; head 1: uniform over 2
    logits = torch.tensor([[0.0, math.log(3.0), 7.0, 7.0]])
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) + math.log(2)
    assert joint_entropy(logits, [2, 2]).item() == pytest.approx(expected, abs=1e-6)


def test_joint_log_prob_is_the_sum_over_heads() -> None:
    # head 0 (size 2): p = [1/4, 3/4]; head 1 (size 3): p = [1/6, 2/6, 3/6]
    logits = torch.tensor([[0.0, math.log(3.0), 0.0, math.log(2.0), math.log(3.0)]] * 3)
    actions = torch.tensor([[1, 2], [0, 0], [1, 1]])
    expected = [
        math.log(3 / 4) + math.log(3 / 6),
        math.log(1 / 4) + math.log(1 / 6),
        math.log(3 / 4) + math.log(2 / 6),
    ]
    got = joint_log_prob(logits, actions, [2, 3]).tolist()
    assert got == pytest.approx(expected, abs=1e-6)


def test_runs_of_equal_heads_give_the_same_numbers_as_one_head_at_a_time() -> None:
    heads = [4, 5, 5, 2, 5]
    logits = torch.randn(7, sum(heads), generator=torch.Generator().manual_seed(1))
    actions = torch.stack([torch.randint(0, h, (7,)) for h in heads], dim=1)
    logp = torch.zeros(7)
    entropy = torch.zeros(7)
    start = 0
    for h, size in enumerate(heads):
        lsm = torch.log_softmax(logits[:, start : start + size], dim=-1)
        logp += lsm[torch.arange(7), actions[:, h]]
        entropy -= (lsm.exp() * lsm).sum(-1)
        start += size
    assert torch.allclose(joint_log_prob(logits, actions, heads), logp, atol=1e-6)
    assert torch.allclose(joint_entropy(logits, heads), entropy, atol=1e-6)


def test_orthogonal_init_gains_and_zero_biases() -> None:
    model = _model(obs_dim=6, head_sizes=[4, 5, 5], hidden_sizes=[16, 12])
    first, second = model.trunk[0].weight, model.trunk[2].weight  # [16, 6], [12, 16]
    # more rows than columns: columns are orthogonal with norm = gain
    assert torch.allclose(first.T @ first, 2.0 * torch.eye(6), atol=1e-5)
    # more columns than rows: rows are orthogonal with norm = gain
    assert torch.allclose(second @ second.T, 2.0 * torch.eye(12), atol=1e-5)
    policy = model.policy.weight  # [14, 12]
    assert torch.allclose(policy.T @ policy, 1e-4 * torch.eye(12), atol=1e-8)
    assert model.value.weight.norm().item() == pytest.approx(1.0, abs=1e-6)
    for name, param in model.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(param) == 0, name


def test_lstm_weights_are_orthogonal_with_gain_one() -> None:
    model = _model(recurrent=True)
    w = model.lstm.weight_hh_l0  # [4 * 12, 12]
    assert torch.allclose(w.T @ w, torch.eye(12), atol=1e-5)
    assert torch.count_nonzero(model.lstm.bias_ih_l0) == 0


def test_activation_choice() -> None:
    assert isinstance(_model(activation="relu").trunk[1], nn.ReLU)
    assert isinstance(_model().trunk[1], nn.Tanh)


def test_same_seed_same_parameters_other_seed_other_parameters() -> None:
    a, b, c = _model(seed=5), _model(seed=5), _model(seed=6)
    for (name, pa), pb, pc in zip(
        a.named_parameters(), b.parameters(), c.parameters(), strict=True
    ):
        assert torch.equal(pa, pb), name
        if name.endswith("weight"):
            assert not torch.equal(pa, pc), name


@pytest.mark.parametrize("recurrent", [False, True])
def test_stepping_matches_unrolling(recurrent: bool) -> None:
    model = _model(recurrent=recurrent)
    obs = torch.randn(3, 5, 6, generator=torch.Generator().manual_seed(2))
    logits, values = model.unroll(obs)
    hidden = model.zero_hidden(3) if recurrent else None
    for t in range(5):
        step_logits, step_values, hidden = model.step(obs[:, t], hidden)
        assert torch.allclose(step_logits, logits[:, t], atol=1e-6)
        assert torch.allclose(step_values, values[:, t], atol=1e-6)
    assert logits.shape == (3, 5, 14) and values.shape == (3, 5)


@pytest.mark.parametrize(
    ("hidden_sizes", "head_sizes", "recurrent"),
    [
        ([16], [9, 5, 5], False),
        ([64, 32, 7], [3, 4, 2, 6, 5, 5], False),  # a factored main action's heads
        ([12], [9, 5, 5], True),
        ([8, 20], [1], True),
        ([], [4, 5], False),
    ],
)
def test_the_torch_free_parameter_count_is_the_models(
    hidden_sizes: list[int], head_sizes: list[int], recurrent: bool
) -> None:
    # what the learner's parameter limit and the orchestrator's memory check count with
    model = ActorCritic(11, head_sizes, hidden_sizes, recurrent=recurrent)
    count = sum(p.numel() for p in model.parameters())
    assert n_params(11, head_sizes, hidden_sizes, recurrent) == count
    if hidden_sizes:  # the learner's reply says the same (it needs a hidden layer)
        cfg = NetContract().make_cfg(
            obs_dim=11, head_sizes=head_sizes, hidden_sizes=hidden_sizes, recurrent=recurrent
        )
        assert TorchNet().init(cfg).n_params == count
