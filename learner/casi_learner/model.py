"""The multi-head actor-critic and the arithmetic of its joint action.

The model is an MLP trunk, an optional single-layer LSTM of the trunk's last width, a policy
head of ``sum(head_sizes)`` logits (heads concatenated in order) and a value head. Parameters
are named ``trunk.<i>.weight|bias`` (``i`` counts the trunk's layers and activations, so the
linear layers are 0, 2, 4...), ``lstm.weight_ih_l0``... (recurrent only), ``policy.weight|bias``
and ``value.weight|bias``.

Initialisation is orthogonal with zero biases: gain sqrt(2) for the trunk, 0.01 for the policy
head, 1 for the value head, and 1 for the LSTM's input and recurrent weights.

A joint action holds one index per head; its log-probability and entropy are sums over the
heads, which are independent categoricals.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

Hidden = tuple[torch.Tensor, torch.Tensor]

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


class ActorCritic(nn.Module):
    """Policy logits and state values from observations."""

    def __init__(
        self,
        obs_dim: int,
        head_sizes: Sequence[int],
        hidden_sizes: Sequence[int],
        recurrent: bool = False,
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.head_sizes = tuple(int(h) for h in head_sizes)
        self.recurrent = recurrent
        self.trunk, width = trunk(obs_dim, hidden_sizes, activation)
        self.width = width
        self.lstm = nn.LSTM(width, width, batch_first=True) if recurrent else None
        self.policy = nn.Linear(width, sum(self.head_sizes))
        self.value = nn.Linear(width, 1)

    def initialise(self, generator: torch.Generator) -> None:
        """Orthogonal weights, zero biases; the same generator state gives the same model."""
        with torch.no_grad():
            for layer in self.trunk:
                if isinstance(layer, nn.Linear):
                    _orthogonal(layer, math.sqrt(2.0), generator)
            if self.lstm is not None:
                for name, param in self.lstm.named_parameters():
                    if name.startswith("weight"):
                        nn.init.orthogonal_(param, 1.0, generator=generator)
                    else:
                        param.zero_()
            _orthogonal(self.policy, 0.01, generator)
            _orthogonal(self.value, 1.0, generator)

    def zero_hidden(self, batch: int, device: torch.device | str = "cpu") -> Hidden:
        shape = (1, batch, self.width)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def step(
        self, obs: torch.Tensor, hidden: Hidden | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, Hidden | None]:
        """One time step: obs [B, obs_dim] -> logits [B, L], values [B], next hidden."""
        x = self.trunk(obs)
        if self.lstm is not None:
            if hidden is None:
                hidden = self.zero_hidden(obs.shape[0], obs.device)
            out, hidden = self.lstm(x.unsqueeze(1), hidden)
            x = out.squeeze(1)
        return self.policy(x), self.value(x).squeeze(-1), hidden

    def unroll(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole sequences from a zero state: obs [B, T, obs_dim] -> logits [B, T, L], values."""
        x = self.trunk(obs)
        if self.lstm is not None:
            x, _ = self.lstm(x, self.zero_hidden(obs.shape[0], obs.device))
        return self.policy(x), self.value(x).squeeze(-1)


def trunk(obs_dim: int, hidden_sizes: Sequence[int], activation: str) -> tuple[nn.Sequential, int]:
    """The MLP trunk (a linear layer and the activation per hidden size) and its width."""
    layers: list[nn.Module] = []
    width = obs_dim
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
        width = size
    return nn.Sequential(*layers), width


def _orthogonal(layer: nn.Linear, gain: float, generator: torch.Generator) -> None:
    nn.init.orthogonal_(layer.weight, gain, generator=generator)
    nn.init.zeros_(layer.bias)


def _runs(head_sizes: Sequence[int]) -> Iterator[tuple[int, int, int, int]]:
    """Consecutive heads of equal size: (first head, count, first logit, size)."""
    head, logit = 0, 0
    while head < len(head_sizes):
        size = head_sizes[head]
        count = 1
        while head + count < len(head_sizes) and head_sizes[head + count] == size:
            count += 1
        yield head, count, logit, size
        head += count
        logit += count * size


def _log_softmax_runs(
    logits: torch.Tensor, head_sizes: Sequence[int]
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Per run of equal heads: (first head, count, log-probabilities [N, count, size])."""
    for head, count, logit, size in _runs(head_sizes):
        block = logits[:, logit : logit + count * size].reshape(-1, count, size)
        yield head, count, torch.log_softmax(block, dim=-1)


def joint_log_prob(
    logits: torch.Tensor, actions: torch.Tensor, head_sizes: Sequence[int]
) -> torch.Tensor:
    """logits [N, sum(heads)], actions int64 [N, n_heads] -> sum over heads of log p, [N]."""
    total = logits.new_zeros(logits.shape[0])
    for head, count, logp in _log_softmax_runs(logits, head_sizes):
        chosen = actions[:, head : head + count].unsqueeze(-1)
        total = total + logp.gather(-1, chosen).squeeze(-1).sum(-1)
    return total


def joint_entropy(logits: torch.Tensor, head_sizes: Sequence[int]) -> torch.Tensor:
    """logits [N, sum(heads)] -> sum over heads of each head's entropy, [N]."""
    total = logits.new_zeros(logits.shape[0])
    for _, _, logp in _log_softmax_runs(logits, head_sizes):
        total = total - (logp.exp() * logp).sum(-1).sum(-1)
    return total
