"""A factored main action (``[algorithm] factored_main``): kind, attribute, agent and value
heads instead of one head of ``A`` main actions.

The learner gets the heads ``[3, C, na, m, 5, ..., 5]``: the kind of main action (noop, guess,
ask: the order of the simulator's layout), the attribute, the agent asked, the value guessed,
then one intention head per agent slot as usual. The orchestrator composes the simulator's
main action from them (SPEC 2.3): noop ``0``, guess ``1 + a*m + v``, ask ``1 + C*m + j*C + a``.

Only the heads the sampled kind uses are part of the action: noop uses none of the other three,
guess the attribute and the value, ask the attribute and the agent. The rest are sampled and
change nothing, so they are left out of the joint log-probability (:func:`relevant`), and the
Train batch's action mask allows only their sampled index (:func:`relevance_mask`): the
learner's log-probability and entropy of such a head are 0, and it gets no gradient from a
step where it did not act.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from casi_proto.heads import head_slices, log_softmax
from casi_sim import GameConfig
from casi_sim.actions import DO_ASK, DO_GUESS, DO_NOOP, N_INTENTIONS, NOOP

if TYPE_CHECKING:
    from casi_orchestrator.rollout import RolloutBuffer

KINDS = ("noop", "guess", "ask")
KIND_NOOP, KIND_GUESS, KIND_ASK = DO_NOOP, DO_GUESS, DO_ASK  # the simulator's order
KIND, ATTR, AGENT, VALUE = range(4)  # the factor heads, before the intention heads
N_FACTORS = 4


class FactoredHeads(list[int]):
    """``head_sizes`` of a factored main action, ``[3, C, na, m] + [5] * na``, that also
    knows the game's sizes."""

    def __init__(self, attrs: int, agents: int, values: int) -> None:
        super().__init__([len(KINDS), attrs, agents, values] + [N_INTENTIONS] * agents)
        self.attrs, self.agents, self.values = attrs, agents, values

    @classmethod
    def of(cls, game: GameConfig) -> FactoredHeads:
        return cls(game.attrs.count, game.n_agents, game.attrs.values)

    @property
    def n_main(self) -> int:
        """``A``, the simulator's number of main actions."""
        c = self.attrs
        return 1 + c * self.values + self.agents * c


def compose(actions: np.ndarray, heads: FactoredHeads) -> np.ndarray:
    """The simulator's main action (int64 [...]) of factored actions (int [..., n_heads])."""
    kind, attr, agent, value = (actions[..., h].astype(np.int64) for h in range(N_FACTORS))
    c, m = heads.attrs, heads.values
    guess = 1 + attr * m + value
    ask = 1 + c * m + agent * c + attr
    return np.where(kind == KIND_GUESS, guess, np.where(kind == KIND_ASK, ask, NOOP))


def main_actions(actions: np.ndarray, game: GameConfig) -> np.ndarray:
    """The simulator's main actions of rollout actions (int [..., n_heads]) of either layout,
    told apart by their number of heads (``1 + na`` or ``4 + na``)."""
    if actions.shape[-1] == N_FACTORS + game.n_agents:
        return compose(actions, FactoredHeads.of(game))
    return actions[..., 0]


def relevant(actions: np.ndarray) -> np.ndarray:
    """Which heads of factored actions (int [..., n_heads]) are part of the action: bool,
    same shape. The kind and the intention heads always are."""
    kind = actions[..., KIND]
    out = np.ones(actions.shape, bool)
    out[..., ATTR] = kind != KIND_NOOP
    out[..., AGENT] = kind == KIND_ASK
    out[..., VALUE] = kind == KIND_GUESS
    return out


def relevance_mask(actions: np.ndarray, heads: FactoredHeads) -> np.ndarray:
    """The action mask of a Train batch (bool [..., sum(heads)]): every action of a head that
    is part of the action, only the sampled one of a head that is not."""
    keep = relevant(actions)
    out = np.ones((*actions.shape[:-1], sum(heads)), bool)
    for h, cols in enumerate(head_slices(heads)[:N_FACTORS]):
        sampled = np.arange(heads[h]) == actions[..., h, None]
        out[..., cols] = keep[..., h, None] | sampled
    return out


def with_relevance(roll: RolloutBuffer, head_sizes: list[int]) -> RolloutBuffer:
    """``roll`` with the action mask of :func:`relevance_mask` (and the one it had, if any)
    when ``head_sizes`` are factored; ``roll`` itself otherwise."""
    if not isinstance(head_sizes, FactoredHeads):
        return roll
    allowed = relevance_mask(roll.actions, head_sizes)
    if roll.allowed is not None:
        allowed &= roll.allowed
    return roll._replace(allowed=allowed)


def main_probs(probs: list[np.ndarray], heads: FactoredHeads) -> np.ndarray:
    """The distribution of the composed main action [B, A], from the factor heads'
    probabilities ([B, size] each, in head order)."""
    kind, attr, agent, value = probs[:N_FACTORS]
    rows = kind.shape[0]
    guess = kind[:, KIND_GUESS, None, None] * attr[:, :, None] * value[:, None, :]  # [B, C, m]
    ask = kind[:, KIND_ASK, None, None] * agent[:, :, None] * attr[:, None, :]  # [B, na, C]
    parts = [kind[:, KIND_NOOP, None], guess.reshape(rows, -1), ask.reshape(rows, -1)]
    return np.concatenate(parts, axis=1)


def main_width(head_sizes: list[int]) -> int:
    """The number of the simulator's main actions, ``A``, of either layout."""
    return head_sizes.n_main if isinstance(head_sizes, FactoredHeads) else head_sizes[0]


def split_probs(logits: np.ndarray, head_sizes: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Of any layout: the distribution of the simulator's main action [B, A] and those of the
    intention heads ([B, 5] each, one per agent slot)."""
    probs = [np.exp(log_softmax(np.asarray(logits[:, cols]))) for cols in head_slices(head_sizes)]
    if isinstance(head_sizes, FactoredHeads):
        return main_probs(probs, head_sizes), probs[N_FACTORS:]
    return probs[0], probs[1:]
