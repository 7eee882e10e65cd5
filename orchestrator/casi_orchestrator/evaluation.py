"""Evaluation on fixed episodes, and its metrics per learning agent (names in :mod:`metrics`).

``return`` is the mean extrinsic return in points, the agent's own (without the share of the
others' rewards that ``incentives.prosocial`` adds in training); ``win_rate`` the share of episodes won;
``steps_to_win`` the mean over winners of the (1-based) step of the win, None if none won;
``questions`` the questions asked of other agents per episode; ``answers_<intention>`` the
replies given per episode, by intention; ``influence`` (with ``[eval] influence``) how much the
answers received move the agent's next action (:mod:`influence`), None when not measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from casi_sim import INTENTION_NAMES, BatchSim

from casi_orchestrator.fleet import Fleet
from casi_orchestrator.influence import Influence
from casi_orchestrator.metrics import (
    INFLUENCE,
    QUESTIONS,
    RETURN,
    STEPS_TO_WIN,
    WIN_RATE,
    answers_key,
)
from casi_orchestrator.rollout import act, allowed_rows, init_hidden, joint_action

Metrics = dict[str, float | None]


class Details(NamedTuple):
    """What an evaluation records besides its metrics."""

    trajectory: bool = False  # episode 0 step by step
    world: bool = False  # episode 0's world at its end
    influence: bool = False  # the answers' influence (feed-forward models only)


@dataclass
class EvalResult:
    """Metrics of one evaluation per agent name, plus details for the log streams."""

    metrics: dict[str, Metrics]
    asked_to: dict[str, list[float]]  # questions per episode, by addressee slot
    trajectory: list[dict[str, Any]] = field(default_factory=list)  # episode 0, step by step
    world: dict[str, Any] = field(default_factory=dict)  # episode 0's world at its end


@dataclass
class Tally:
    """Per-episode sums over an evaluation, [episodes, L] per learning agent."""

    ret: np.ndarray
    won: np.ndarray
    win_step: np.ndarray
    asked: np.ndarray
    answers: np.ndarray  # [episodes, L, intentions]
    asked_to: np.ndarray  # [L, na]: questions by addressee, summed over episodes

    @classmethod
    def zeros(cls, episodes: int, n: int, n_agents: int) -> Tally:
        return cls(
            ret=np.zeros((episodes, n)),
            won=np.zeros((episodes, n), bool),
            win_step=np.zeros((episodes, n)),
            asked=np.zeros((episodes, n)),
            answers=np.zeros((episodes, n, len(INTENTION_NAMES))),
            asked_to=np.zeros((n, n_agents)),
        )


def evaluate(
    fleet: Fleet,
    sim: BatchSim,
    seed: int,
    head_sizes: list[int],
    recurrent: bool,
    rng: np.random.Generator | None = None,
    details: Details | None = None,
    mask_pointless: bool = False,
) -> EvalResult:
    """``sim.batch`` episodes from ``sim.reset(seed)``, greedy (``rng`` None) or sampled
    (among the actions that are not pointless, with ``mask_pointless``)."""
    details = details or Details()
    members = fleet.members
    influence = Influence(fleet, sim.cfg, head_sizes) if details.influence else None
    slots = [m.slot for m in members]
    obs = sim.reset(seed)
    init_hidden(fleet, recurrent, sim.batch)
    tally = Tally.zeros(sim.batch, len(members), sim.n_agents)
    done = np.zeros((sim.batch, sim.n_agents), bool)
    trajectory = []
    obs_prev = obs.copy()
    for t in range(sim.cfg.max_steps):
        allowed = allowed_rows(sim, slots) if mask_pointless else None
        preds, actions, _ = act(fleet, obs, head_sizes, rng, allowed)
        if influence is not None and t > 0:
            influence.step(obs_prev, obs, [logits for logits, _ in preds], ~done, allowed)
        main, intentions = joint_action(slots, actions, sim.n_agents, head_sizes)
        _count_questions(tally.asked_to, main, done, slots, sim)
        if details.trajectory:
            trajectory.append(_trajectory_step(t, main, intentions, done, fleet))
        obs_prev[:] = obs
        obs, reward, done, info = sim.step(main, intentions)
        _add_step(tally, t, info["own_reward"][:, slots], info, slots)
        if trajectory:
            trajectory[-1]["rewards"] = reward[0].tolist()
    world = {}
    if details.world:
        state = sim.state()
        world = {key: np.asarray(state[key][0]).tolist() for key in state}
    names = [m.name for m in members]
    asked_to = {name: (tally.asked_to[k] / sim.batch).tolist() for k, name in enumerate(names)}
    metrics = agent_metrics(tally, names)
    means = influence.means() if influence else [None] * len(names)
    for name, value in zip(names, means, strict=True):
        metrics[name][INFLUENCE] = value
    return EvalResult(metrics, asked_to, trajectory, world)


def _count_questions(
    asked_to: np.ndarray, main: np.ndarray, done: np.ndarray, slots: list[int], sim: BatchSim
) -> None:
    c, m = sim.cfg.attrs.count, sim.cfg.attrs.values
    for k, slot in enumerate(slots):
        ask = main[:, slot] - 1 - c * m
        is_ask = ~done[:, slot] & (ask >= 0)
        np.add.at(asked_to[k], ask[is_ask] // c, 1)


def _add_step(
    tally: Tally, t: int, reward: np.ndarray, info: dict[str, np.ndarray], slots: list[int]
) -> None:
    tally.ret += reward
    new_win = info["won"][:, slots] & ~tally.won
    tally.win_step[new_win] = t + 1
    tally.won |= new_win
    tally.asked += info["asked"][:, slots]
    tally.answers += info["answers"][:, slots, :]


def agent_metrics(tally: Tally, names: list[str]) -> dict[str, Metrics]:
    """The metrics of every learning agent from an evaluation's sums."""
    metrics = {}
    for k, name in enumerate(names):
        wins = tally.won[:, k]
        row: Metrics = {
            RETURN: float(tally.ret[:, k].mean()),
            WIN_RATE: float(wins.mean()),
            STEPS_TO_WIN: float(tally.win_step[wins, k].mean()) if wins.any() else None,
            QUESTIONS: float(tally.asked[:, k].mean()),
        }
        for i, intention in enumerate(INTENTION_NAMES):
            row[answers_key(intention)] = float(tally.answers[:, k, i].mean())
        metrics[name] = row
    return metrics


def _trajectory_step(
    t: int, main: np.ndarray, intentions: np.ndarray, done: np.ndarray, fleet: Fleet
) -> dict[str, Any]:
    return {
        "t": t,
        "actions": {
            m.name: [int(main[0, m.slot]), *intentions[0, m.slot].tolist()]
            for m in fleet.members
            if not done[0, m.slot]
        },
    }
