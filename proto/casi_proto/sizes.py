"""Sizes by arithmetic alone (no torch): the game's layout, and casi-learner's model.

The game's observation and main action (SPEC 2.3, 2.5) for ``attrs`` C, ``values`` m and
``agents`` na: :func:`game_obs_dim`, :func:`game_head_sizes`.

casi-learner's MLP (casi_learner.model.ActorCritic) is a trunk of ``hidden_sizes``, an optional
single-layer LSTM of the trunk's last width, a policy head of ``sum(head_sizes)`` logits and a
value head; its slot model (casi_learner.slots.SlotActorCritic, NetCfg.model MODEL_SLOTS) adds
to the same trunk a layer shared by the attributes and its ask and guess outputs. The learner's
parameter limit and the orchestrator's memory check count with :func:`n_params`; the learner's
tests hold it to the torch models.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from casi_proto.names import N_INTENTIONS

ANSWER_KINDS = 4  # none, unknown, known, value
OWN_FLAGS = 4  # direct, goal, solved, guesses used


def game_obs_dim(attrs: int, values: int, agents: int) -> int:
    """``C*(4+m) + na*C*(4+m) + 2*na*C + 2`` (SPEC 2.5)."""
    return attrs * (4 + values) * (1 + agents) + 2 * agents * attrs + 2


def game_head_sizes(attrs: int, values: int, agents: int) -> list[int]:
    """The main head ``1 + C*m + na*C``, then one head of 5 intentions per agent slot."""
    return [1 + attrs * values + agents * attrs] + [N_INTENTIONS] * agents


def slot_inputs(agents: int, width: int) -> int:
    """Inputs of the slot model's shared layer: an attribute's own flags, the kind of each
    agent's last answer about it, the questions about it received from and asked of each
    agent, and the trunk's output."""
    return OWN_FLAGS + ANSWER_KINDS * agents + 2 * agents + width


def n_params(
    obs_dim: int,
    head_sizes: Sequence[int],
    hidden_sizes: Sequence[int],
    recurrent: bool,
    slots_agents: int | None = None,
) -> int:
    """The parameters of casi-learner's model for a NetCfg of these fields (what its
    InitReply.n_params says); plain ints, so a size no NetCfg can hold is counted too.
    ``slots_agents``: the slot model's (MODEL_SLOTS) for a game of that many agent slots."""
    widths = [obs_dim, *hidden_sizes]
    n = sum((a + 1) * b for a, b in pairwise(widths))
    w = widths[-1]
    if slots_agents is not None:
        na = slots_agents
        n += (slot_inputs(na, w) + 1) * w  # the shared layer
        return n + (w + 1) * (na + (2 + na) + (1 + N_INTENTIONS * na) + 1)  # its heads, value
    n += (w + 1) * (sum(head_sizes) + 1)  # the policy and value heads
    return n + (8 * w * (w + 1) if recurrent else 0)  # the LSTM's 4 gates, input and recurrent
