"""Acting and rollout collection: the learners' Predict, sampled actions, the game's step.

:func:`act` is shared by training rollouts and evaluation; :func:`collect` fills a
:class:`RolloutBuffer` with one iteration's ``B`` training episodes.

Pipelined (``collect(..., parts=2)``, ``[learners] pipeline``): the episodes are split into
parts of consecutive rows, and while the learners compute one part's Predict, the orchestrator
samples the actions of another and steps its episodes (``BatchSim.step_rows``), so that
neither side waits for the other. The same uniforms are drawn from ``rng`` as in the loop
without parts (all of a step's, for the whole batch, before its first part is sampled) and
the episodes are independent, so the rollout is the same row for row as long as a learner's
forward pass gives a row the same numbers in a part as in the whole batch. The parts have a
multiple of 16 rows for that (the torch learner's kernels on this CPU then do; a value from a
batch of 50 rows, say, may differ in the last bit from the same row in a batch of 100).
Feed-forward models only: a recurrent Predict takes the whole batch of its InitHidden.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, cast

import numpy as np
from casi_proto.api import Pending
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
    parts: int | None = None,
) -> RolloutBuffer:
    """``sim.batch`` training episodes from ``sim.reset(seed)``, actions sampled with ``rng``
    (among the actions that are not pointless, with ``mask_pointless``); pipelined in
    ``parts`` parts of the batch (default: ``fleet.pipeline``) if there are more than one
    (feed-forward models only)."""
    rows = row_parts(sim.batch, fleet.pipeline if parts is None else parts)
    if len(rows) > 1 and not recurrent:
        return _collect_pipelined(fleet, sim, seed, rng, head_sizes, rows, observe, mask_pointless)
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


ALIGN = 16  # rows per part: a multiple of this where the batch allows it


def row_parts(batch: int, parts: int) -> list[slice]:
    """``batch`` rows as at most ``parts`` slices of consecutive rows, each a multiple of
    :data:`ALIGN` rows but the last (one slice when the batch has too few rows)."""
    if parts <= 1 or batch < 2 * ALIGN:
        return [slice(0, batch)]
    size = -(-batch // parts)
    size = -(-size // ALIGN) * ALIGN
    return [slice(lo, min(batch, lo + size)) for lo in range(0, batch, size)]


class _Drawn:
    """Stands in for the rollout's Generator in :func:`sampling.sample_heads`: uniforms drawn
    before, for the rows of one part."""

    def __init__(self, u: np.ndarray) -> None:
        self.u = u

    def random(self, shape: tuple[int, ...]) -> np.ndarray:
        if tuple(shape) != self.u.shape:
            raise AssertionError(f"sample_heads drew {shape}, the part has {self.u.shape}")
        return self.u


def _start(fleet: Fleet, obs: np.ndarray) -> list[Pending]:
    """Every member's Predict on ``obs`` (its slot's columns), in flight."""
    return [fleet.predict_async(m, np.ascontiguousarray(obs[:, m.slot])) for m in fleet.members]


def _collect_pipelined(
    fleet: Fleet,
    sim: BatchSim,
    seed: int,
    rng: np.random.Generator,
    head_sizes: list[int],
    parts: list[slice],
    observe: StepObserver | None,
    mask_pointless: bool,
) -> RolloutBuffer:
    """:func:`collect` part by part: the Predicts of one part in flight while another part
    is sampled and stepped."""
    members, steps = fleet.members, sim.cfg.max_steps
    slots = [m.slot for m in members]
    width = sum(head_sizes)
    obs = sim.reset(seed)
    roll = RolloutBuffer.zeros(
        len(members), sim.batch, steps, sim.obs_dim, head_sizes, mask_pointless
    )
    done = np.zeros((sim.batch, sim.n_agents), bool)
    flying = [_start(fleet, obs[rows]) for rows in parts]
    try:
        for t in range(steps):
            noise = [rng.random((sim.batch, width)) for _ in members]  # as act() draws them
            for p, rows in enumerate(parts):
                preds = [pending.result() for pending in flying[p]]
                flying[p] = []
                allowed = None
                if mask_pointless:
                    allowed = [ok[rows] for ok in allowed_rows(sim, slots)]
                    preds = [
                        (sampling.masked(lg, ok), v)
                        for (lg, v), ok in zip(preds, allowed, strict=True)
                    ]
                actions = []
                for k, m in enumerate(members):
                    logits, values = preds[k]
                    draw = cast(Any, _Drawn(noise[k][rows]))
                    action, logp = sampling.sample_heads(logits, head_sizes, draw)
                    actions.append(action)
                    if allowed is not None and roll.allowed is not None:
                        roll.allowed[k, rows, t] = allowed[k]
                    roll.obs[k, rows, t] = obs[rows, m.slot]
                    roll.actions[k, rows, t] = action
                    roll.logp[k, rows, t] = logp
                    roll.values[k, rows, t] = values
                    if observe is not None:
                        observe(k, logits, ~done[rows, m.slot])
                roll.mask[:, rows, t] = (~done[rows][:, slots]).T
                step = joint_action(slots, actions, sim.n_agents, head_sizes)
                obs[rows], reward, done[rows], _ = sim.step_rows(rows, *step)
                roll.rewards[:, rows, t] = reward[:, slots].T
                if t + 1 < steps:
                    flying[p] = _start(fleet, obs[rows])
    finally:
        _settle(flying)
    return roll


def _settle(flying: list[list[Pending]]) -> None:
    """Waits for the Predicts still in flight after a failure (their errors are the
    failure's: the phase is repeated or given up)."""
    for pending in (x for part in flying for x in part):
        try:
            pending.result()
        except Exception:  # noqa: BLE001, S112 - the first failure is the one raised
            continue
