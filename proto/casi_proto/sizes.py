"""The size of casi-learner's model for a NetCfg, by arithmetic alone (no torch).

The model (casi_learner.model.ActorCritic) is an MLP trunk of ``hidden_sizes``, an optional
single-layer LSTM of the trunk's last width, a policy head of ``sum(head_sizes)`` logits and a
value head. The learner's parameter limit and the orchestrator's memory check count with
:func:`n_params`; the learner's tests hold it to the torch model.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise


def n_params(
    obs_dim: int, head_sizes: Sequence[int], hidden_sizes: Sequence[int], recurrent: bool
) -> int:
    """The parameters of casi-learner's model for a NetCfg of these fields (what its
    InitReply.n_params says); plain ints, so a size no NetCfg can hold is counted too."""
    widths = [obs_dim, *hidden_sizes]
    n = sum((a + 1) * b for a, b in pairwise(widths))
    w = widths[-1]
    n += (w + 1) * (sum(head_sizes) + 1)  # the policy and value heads
    return n + (8 * w * (w + 1) if recurrent else 0)  # the LSTM's 4 gates, input and recurrent
