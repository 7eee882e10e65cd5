"""Helpers for the simulator's tests: small games, both implementations, observation blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from casi_sim import BatchSim, GameConfig
from casi_sim.reference import ReferenceSim

# Distinct incentives, so that a reward tells which rule fired.
DISTINCT = {
    "cost_ask_question": 1,
    "cost_ask_self_question": 3,
    "cost_excessive_guessing": 5,
    "cost_incorrect_guess": 7,
    "cost_known_guess": 11,
    "cost_non_goal_guess": 13,
    "cost_solved_guess": 17,
    "cost_unnecessary_reply": 19,
    "reward_correct": 100,
    "reward_win": 1000,
}


def game(**keys: Any) -> GameConfig:
    """A small game with distinct incentives; ``keys`` override any part of it."""
    incentives = {**DISTINCT, **keys.pop("incentives", {})}
    base: dict[str, Any] = {
        "agents": ["learner", "learner"],
        "max_steps": 6,
        "attrs": {"count": 5, "direct": 1, "goal": 1, "values": 3},
        "incentives": incentives,
    }
    return GameConfig(**{**base, **keys})


@pytest.fixture(params=["kernel", "reference"])
def make_sim(request: pytest.FixtureRequest):
    """Builds a BatchSim or a ReferenceSim: every rule test runs on both."""
    cls = BatchSim if request.param == "kernel" else ReferenceSim

    def build(cfg: GameConfig, batch: int = 1, seed: int = 0):
        return cls(cfg, batch=batch, seed=seed)

    return build


def act(sim, main: dict[int, int] | None = None, say: dict[tuple[int, int], int] | None = None):
    """One step of every episode: ``main[i]`` and ``say[(i, q)]`` (i's intention towards q);
    everything else is noop / ignore. Returns (obs, reward, done, info) as arrays."""
    na = sim.cfg.n_agents
    m = np.zeros((sim.batch, na), np.int64)
    it = np.zeros((sim.batch, na, na), np.int64)
    for i, a in (main or {}).items():
        m[:, i] = a
    for (i, q), x in (say or {}).items():
        it[:, i, q] = x
    return sim.step(m, it)


@dataclass
class Blocks:
    own: np.ndarray  # [C, 4+m]: direct, goal, solved, guesses used, value one-hot
    answers: np.ndarray  # [na, C, 4+m]: none, unknown, known, value, value one-hot
    received: np.ndarray  # [na, C]
    asked: np.ndarray  # [na, C]
    time: float
    done: float


def blocks(cfg: GameConfig, row: np.ndarray) -> Blocks:
    """An observation row cut into the blocks of SPEC 2.5 (the layout written out again)."""
    c, m, na = cfg.attrs.count, cfg.attrs.values, cfg.n_agents
    assert row.shape == (c * (4 + m) + na * c * (4 + m) + 2 * na * c + 2,)
    sizes = [c * (4 + m), na * c * (4 + m), na * c, na * c, 1, 1]
    own, answers, received, asked, time, done = np.split(row, np.cumsum(sizes)[:-1])
    return Blocks(
        own.reshape(c, 4 + m),
        answers.reshape(na, c, 4 + m),
        received.reshape(na, c),
        asked.reshape(na, c),
        float(time[0]),
        float(done[0]),
    )


def world(sim, b: int = 0) -> dict[str, np.ndarray]:
    """Episode ``b``'s world: values [C], direct / goal [na] lists of attributes."""
    st = sim.state()
    na = sim.cfg.n_agents
    return {
        "values": st["values"][b],
        "direct": [list(np.flatnonzero(st["direct"][b, i])) for i in range(na)],
        "goal": [list(np.flatnonzero(st["goal"][b, i])) for i in range(na)],
        "salt": st["salt"][b],
    }


def outside(w: dict, i: int) -> list[int]:
    """Attributes agent i neither knows directly nor has as goals."""
    c = len(w["values"])
    return [a for a in range(c) if a not in w["direct"][i] and a not in w["goal"][i]]
