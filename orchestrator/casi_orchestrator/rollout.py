"""Acting and rollout collection: the learners' Predict, sampled actions, the game's step.

:func:`act` is shared by training rollouts and evaluation; :func:`collect` fills a
:class:`RolloutBuffer` with one iteration's ``B`` training episodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from casi_sim import BatchSim

from casi_orchestrator import sampling
from casi_orchestrator.factored import N_FACTORS, FactoredHeads, compose
from casi_orchestrator.fleet import Fleet

Prediction = tuple[np.ndarray, np.ndarray]  # logits [B, sum(heads)], values [B]
# told (learner index k, its logits, which episodes it acted in) at every step of a rollout
StepObserver = Callable[[int, np.ndarray, np.ndarray], None]


class RolloutBuffer(NamedTuple):
    """Training data of one iteration: arrays [L, B, T, ...] over the L learning agents."""

    obs: np.ndarray  # float32 [L, B, T, obs_dim]
    actions: np.ndarray  # int64 [L, B, T, n_heads]
    logp: np.ndarray  # float32 [L, B, T]
    values: np.ndarray  # float32 [L, B, T]
    rewards: np.ndarray  # float32 [L, B, T], game points
    mask: np.ndarray  # float32 [L, B, T], 1 where the agent acted
    allowed: np.ndarray | None = None  # bool [L, B, T, sum(heads)]: [algorithm] mask_pointless

    @classmethod
    def zeros(
        cls, n: int, batch: int, steps: int, obs_dim: int, head_sizes: list[int], masked: bool
    ) -> RolloutBuffer:
        n_heads, width = len(head_sizes), sum(head_sizes)
        return cls(
            obs=np.zeros((n, batch, steps, obs_dim), np.float32),
            actions=np.zeros((n, batch, steps, n_heads), np.int64),
            logp=np.zeros((n, batch, steps), np.float32),
            values=np.zeros((n, batch, steps), np.float32),
            rewards=np.zeros((n, batch, steps), np.float32),
            mask=np.zeros((n, batch, steps), np.float32),
            allowed=np.zeros((n, batch, steps, width), bool) if masked else None,
        )


def act(
    fleet: Fleet,
    obs: np.ndarray,
    head_sizes: list[int],
    rng: np.random.Generator | None,
    allowed: list[np.ndarray] | None = None,
) -> tuple[list[Prediction], list[np.ndarray], list[np.ndarray]]:
    """Every member's Predict on its slot's observations, then one action per head.

    ``rng`` None: the argmax of every head. ``allowed`` (bool [B, sum(heads)] per member):
    the logits of the other actions are set to :data:`sampling.MASKED` first, and the
    predictions returned are the masked ones. Returns the predictions, the actions
    (int64 [B, n_heads]) and their joint log-probabilities (float32 [B]), per member.
    """
    preds = fleet.each(lambda m: m.net.predict(np.ascontiguousarray(obs[:, m.slot])))
    if allowed is not None:
        preds = [(sampling.masked(lg, ok), v) for (lg, v), ok in zip(preds, allowed, strict=True)]
    actions, logps = [], []
    for logits, _ in preds:
        action, logp = sampling.sample_heads(logits, head_sizes, rng)
        actions.append(action)
        logps.append(logp)
    return preds, actions, logps


def joint_action(
    slots: list[int],
    actions: list[np.ndarray],
    n_agents: int,
    head_sizes: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The simulator's (main [B, na], intentions [B, na, na]); scripted slots stay 0. With
    :class:`FactoredHeads` the main action is composed of the factor heads."""
    batch = actions[0].shape[0]
    main = np.zeros((batch, n_agents), np.int64)
    intentions = np.zeros((batch, n_agents, n_agents), np.int64)
    for slot, action in zip(slots, actions, strict=True):
        if isinstance(head_sizes, FactoredHeads):
            main[:, slot] = compose(action, head_sizes)
            intentions[:, slot, :] = action[:, N_FACTORS:]
        else:
            main[:, slot] = action[:, 0]
            intentions[:, slot, :] = action[:, 1:]
    return main, intentions


def allowed_rows(sim: BatchSim, slots: list[int]) -> list[np.ndarray]:
    """Per slot, the actions that are not pointless now, in head order: bool [B, sum(heads)]."""
    main, intentions = sim.allowed_actions()
    return [np.concatenate([main[:, s], intentions[:, s].reshape(sim.batch, -1)], 1) for s in slots]


def init_hidden(fleet: Fleet, recurrent: bool, batch: int) -> None:
    """InitHidden on every learner, for recurrent models only (a no-op for the others)."""
    if recurrent:
        fleet.each(lambda m: m.net.init_hidden(batch))


def collect(
    fleet: Fleet,
    sim: BatchSim,
    seed: int,
    rng: np.random.Generator,
    head_sizes: list[int],
    recurrent: bool,
    observe: StepObserver | None = None,
    mask_pointless: bool = False,
) -> RolloutBuffer:
    """``sim.batch`` training episodes from ``sim.reset(seed)``, actions sampled with ``rng``
    (among the actions that are not pointless, with ``mask_pointless``)."""
    members, steps = fleet.members, sim.cfg.max_steps
    slots = [m.slot for m in members]
    obs = sim.reset(seed)
    init_hidden(fleet, recurrent, sim.batch)
    roll = RolloutBuffer.zeros(
        len(members), sim.batch, steps, sim.obs_dim, head_sizes, mask_pointless
    )
    done = np.zeros((sim.batch, sim.n_agents), bool)
    for t in range(steps):
        allowed = allowed_rows(sim, slots) if mask_pointless else None
        preds, actions, logps = act(fleet, obs, head_sizes, rng, allowed)
        for k, m in enumerate(members):
            if allowed is not None and roll.allowed is not None:
                roll.allowed[k, :, t] = allowed[k]
            roll.obs[k, :, t] = obs[:, m.slot]
            roll.actions[k, :, t] = actions[k]
            roll.logp[k, :, t] = logps[k]
            roll.values[k, :, t] = preds[k][1]
            if observe is not None:
                observe(k, preds[k][0], ~done[:, m.slot])
        roll.mask[:, :, t] = (~done[:, slots]).T
        obs, reward, done, _ = sim.step(*joint_action(slots, actions, sim.n_agents, head_sizes))
        roll.rewards[:, :, t] = reward[:, slots].T
    return roll
