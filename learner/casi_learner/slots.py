"""The slot model (NetCfg.model MODEL_SLOTS): one network shared by every attribute.

The flat MLP learns each attribute's chain (ask about it, then guess the value the answer
named) on its own, with weights no other attribute uses: in a world of 32 values it learns
one attribute after another (docs/learning.md). This model reads the observation's layout
(SPEC 2.5) and computes the main head's logits of every attribute ``a`` with the same weights:

- the trunk, the MLP of ``hidden_sizes`` over the whole observation, gives ``z``;
- attribute ``a``'s features: its own flags (direct, goal, solved, guesses used), the kind of
  each agent's last answer about it, the questions about it received from and asked of each
  agent, and ``z``; one shared layer makes them ``h_a``;
- asking agent ``j`` about ``a``: logit ``ask(h_a)[j]``;
- guessing value ``v`` of ``a``: logit ``c_a . x_av`` with coefficients ``c_a = guess(h_a)``
  over ``x_av = [1, own one-hot of a at v, each agent's answer one-hot of a at v]``: what
  an answer says about one value counts the same way for every value and attribute;
- noop, the intention heads and the state value: linear in ``z``.

Parameters: ``trunk.<i>``, ``slot.0`` (the shared layer), ``ask``, ``guess``, ``other``
(noop, then the intention heads), ``value``. Initialisation as the MLP's: orthogonal, zero
biases, gain sqrt(2) for the trunk and the shared layer, 0.01 for the logits, 1 for the value.
"""

from __future__ import annotations

import math

import torch
from casi_proto.names import N_INTENTIONS
from casi_proto.sizes import (
    ANSWER_KINDS,
    OWN_FLAGS,
    game_head_sizes,
    game_obs_dim,
    slot_inputs,
)
from torch import nn

from casi_learner.model import ACTIVATIONS, Hidden, _orthogonal, trunk


class SlotActorCritic(nn.Module):
    """Policy logits and state values, the main head's shared by the attributes."""

    recurrent = False

    def __init__(
        self, attrs: int, values: int, agents: int, hidden_sizes: list[int], activation: str
    ) -> None:
        super().__init__()
        self.attrs, self.values, self.agents = attrs, values, agents
        self.obs_dim = game_obs_dim(attrs, values, agents)
        self.head_sizes = tuple(game_head_sizes(attrs, values, agents))
        self.trunk, width = trunk(self.obs_dim, hidden_sizes, activation)
        self.width = width
        self.slot = nn.Sequential(
            nn.Linear(slot_inputs(agents, width), width), ACTIVATIONS[activation]()
        )
        self.ask = nn.Linear(width, agents)
        self.guess = nn.Linear(width, 2 + agents)
        self.other = nn.Linear(width, 1 + N_INTENTIONS * agents)
        self.value = nn.Linear(width, 1)
        # the widest activation of one row: the guess features, or the shared layer's input
        self.row_width = attrs * max(values * (2 + agents), slot_inputs(agents, width))

    def initialise(self, generator: torch.Generator) -> None:
        """Orthogonal weights, zero biases; the same generator state gives the same model."""
        with torch.no_grad():
            for layer in [*self.trunk, *self.slot]:
                if isinstance(layer, nn.Linear):
                    _orthogonal(layer, math.sqrt(2.0), generator)
            for layer in (self.ask, self.guess, self.other):
                _orthogonal(layer, 0.01, generator)
            _orthogonal(self.value, 1.0, generator)

    def step(
        self, obs: torch.Tensor, hidden: Hidden | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, Hidden | None]:
        """One time step: obs [B, obs_dim] -> logits [B, L], values [B], no hidden state."""
        logits, values = self.unroll(obs)
        return logits, values, None

    def unroll(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [..., obs_dim] -> logits [..., L], values [...] (any leading dimensions)."""
        z = self.trunk(obs)
        own, answers, received, asked = self._split(obs)
        c = self.attrs
        context = z.unsqueeze(-2).expand(*z.shape[:-1], c, self.width)
        kinds = answers[..., :ANSWER_KINDS].flatten(-2)  # [..., C, na * 4]
        h = self.slot(torch.cat([own[..., :OWN_FLAGS], kinds, received, asked, context], -1))
        ask = self.ask(h).transpose(-2, -1).flatten(-2)  # [..., na * C], agent-major as the game
        said = answers[..., ANSWER_KINDS:].transpose(-2, -1)  # [..., C, m, na]
        ones = torch.ones_like(said[..., :1])
        x = torch.cat([ones, own[..., OWN_FLAGS:].unsqueeze(-1), said], -1)  # [..., C, m, 2+na]
        guess = (x * self.guess(h).unsqueeze(-2)).sum(-1).flatten(-2)  # [..., C * m]
        other = self.other(z)
        logits = torch.cat([other[..., :1], guess, ask, other[..., 1:]], -1)
        return logits, self.value(z).squeeze(-1)

    def _split(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The observation's blocks 1-4 per attribute: own [..., C, 4+m], answers
        [..., C, na, 4+m], questions received and asked [..., C, na]."""
        c, m, na = self.attrs, self.values, self.agents
        lead = obs.shape[:-1]
        own_end = c * (4 + m)
        answers_end = own_end + na * c * (4 + m)
        own = obs[..., :own_end].reshape(*lead, c, 4 + m)
        answers = obs[..., own_end:answers_end].reshape(*lead, na, c, 4 + m).transpose(-3, -2)
        questions = obs[..., answers_end : answers_end + 2 * na * c].reshape(*lead, 2, na, c)
        received = questions[..., 0, :, :].transpose(-2, -1)
        asked = questions[..., 1, :, :].transpose(-2, -1)
        return own, answers, received, asked
