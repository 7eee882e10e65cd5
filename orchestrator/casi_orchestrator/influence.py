"""How much an answer moves its questioner: the causal influence of communication (Lowe et
al. 2019), measured during evaluation.

At every step, for each learning agent that asked a question in the step before and now holds
an answer to it, the answer in its observation is swapped for another one (a value for the
next value, ``unknown`` for ``known`` and back) and the learner is asked for its policy on
the swapped observation. The influence is the total-variation distance between the main-action
distributions on the real and the swapped observation (0: the answer changes nothing the agent
does, 1: it decides everything), averaged over those answers. Feed-forward models only: a
second Predict would advance a recurrent model's state.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from casi_sim import GameConfig
from casi_sim.actions import ANSWER_KINDS, ANSWER_KNOWN, ANSWER_UNKNOWN, ANSWER_VALUE, CELL_FLAGS

from casi_orchestrator.factored import split_probs
from casi_orchestrator.fleet import Fleet, Member
from casi_orchestrator.sampling import masked


class Layout(NamedTuple):
    """Where the answers (block 2) and the pending questions (block 4) sit in an observation."""

    answers: int  # first column of block 2
    pending: int  # first column of block 4
    attrs: int  # C
    values: int  # m
    agents: int  # na

    @classmethod
    def of(cls, game: GameConfig) -> Layout:
        c, m, na = game.attrs.count, game.attrs.values, game.n_agents
        cell = CELL_FLAGS + m
        answers = c * cell
        pending = answers + na * c * cell + na * c
        return cls(answers, pending, c, m, na)


def swapped(obs_prev: np.ndarray, obs: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``obs`` [B, obs_dim] that hold an answer to the question pending in
    ``obs_prev``, and those rows with that answer swapped."""
    c, m, na = layout.attrs, layout.values, layout.agents
    pending = obs_prev[:, layout.pending : layout.pending + na * c] > 0
    rows = np.flatnonzero(pending.any(axis=1))
    cells = pending[rows].argmax(axis=1)  # j * C + a of the question
    width = len(ANSWER_KINDS) + m
    starts = layout.answers + cells * width
    cf = obs[rows].copy()
    keep = np.ones(len(rows), bool)
    for r, start in enumerate(starts):
        kind = int(cf[r, start : start + len(ANSWER_KINDS)].argmax())
        values = cf[r, start + len(ANSWER_KINDS) : start + width]
        if kind == ANSWER_VALUE:
            values[:] = np.roll(values, 1)
        elif kind in (ANSWER_UNKNOWN, ANSWER_KNOWN):
            other = ANSWER_KNOWN if kind == ANSWER_UNKNOWN else ANSWER_UNKNOWN
            cf[r, start + kind], cf[r, start + other] = 0.0, 1.0
        else:
            keep[r] = False  # the question was ignored: there is nothing to swap
    return rows[keep], cf[keep]


class Influence:
    """Sums of the influence per learning agent over one evaluation."""

    def __init__(self, fleet: Fleet, game: GameConfig, head_sizes: list[int]) -> None:
        self.fleet, self.layout, self.head_sizes = fleet, Layout.of(game), head_sizes
        self.total = np.zeros(len(fleet.members))
        self.count = np.zeros(len(fleet.members), np.int64)

    def step(
        self,
        obs_prev: np.ndarray,
        obs: np.ndarray,
        logits: list[np.ndarray],
        acting: np.ndarray,
        allowed: list[np.ndarray] | None = None,
    ) -> None:
        """One step: observations [B, na, obs_dim] before and now, each member's logits on
        ``obs``, which (episode, slot) still act, and the action masks the logits had (an
        answer changes nothing a mask depends on, so the swapped ones get the same)."""
        for k, member in enumerate(self.fleet.members):
            rows, cf = swapped(obs_prev[:, member.slot], obs[:, member.slot], self.layout)
            live = acting[rows, member.slot]
            rows, cf = rows[live], cf[live]
            if len(rows):
                ok = None if allowed is None else allowed[k][rows]
                self._add(k, member, logits[k][rows], cf, ok)

    def _add(
        self, k: int, member: Member, logits: np.ndarray, cf: np.ndarray, ok: np.ndarray | None
    ) -> None:
        ((cf_logits, _),) = self.fleet.each(lambda m: m.net.predict(cf), [member])
        if ok is not None:
            cf_logits = masked(cf_logits, ok)
        p, q = split_probs(logits, self.head_sizes)[0], split_probs(cf_logits, self.head_sizes)[0]
        self.total[k] += 0.5 * np.abs(p - q).sum(axis=1).sum()
        self.count[k] += len(logits)

    def means(self) -> list[float | None]:
        return [float(t / n) if n else None for t, n in zip(self.total, self.count, strict=True)]
