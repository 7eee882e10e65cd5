"""The causal influence of an answer: the swap of the answer just received, by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from casi.v1.net_pb2 import NetCfg
from casi_orchestrator.config import LearnersCfg
from casi_orchestrator.fleet import Fleet, Member
from casi_orchestrator.influence import Influence, Layout, swapped
from casi_orchestrator.learners import LearnerPool
from casi_sim import BatchSim, GameConfig, ask_action

GAME = GameConfig(
    agents=["learner", "honest"],
    max_steps=4,
    attrs={"count": 3, "direct": 1, "goal": 1, "values": 3},
)
L = Layout.of(GAME)
CELL = 4 + 3  # answer kind one-hot, then the value one-hot


def cell(j: int, a: int) -> int:
    return L.answers + (j * L.attrs + a) * CELL


def pending(j: int, a: int) -> int:
    return L.pending + j * L.attrs + a


def test_layout_matches_the_observation_size() -> None:
    # block 4 ends two entries (t / T, done) before the end of the observation
    assert L.pending + L.agents * L.attrs + 2 == GAME.obs_dim


def test_a_value_becomes_the_next_value_and_unknown_becomes_known() -> None:
    before, now = np.zeros((3, GAME.obs_dim)), np.zeros((3, GAME.obs_dim))
    before[[0, 1, 2], [pending(1, 2), pending(1, 0), pending(1, 1)]] = 1.0
    now[0, cell(1, 2) + 3] = now[0, cell(1, 2) + 4 + 2] = 1.0  # value 2
    now[1, cell(1, 0) + 1] = 1.0  # unknown
    now[2, cell(1, 1)] = 1.0  # none: the question was ignored
    rows, cf = swapped(before, now, L)
    assert rows.tolist() == [0, 1]
    assert cf[0, cell(1, 2) + 4 : cell(1, 2) + 7].tolist() == [1.0, 0.0, 0.0]  # value 0
    assert cf[1, cell(1, 0) : cell(1, 0) + 4].tolist() == [0.0, 0.0, 1.0, 0.0]  # known
    assert (cf[0] != now[0]).sum() == 2 and (cf[1] != now[1]).sum() == 2


class AnswerFollower:
    """Asks agent 1 about attribute 0 until it has an answer, then guesses attribute 0 = the
    value it was told (0 if told unknown, 1 if told known): every answer decides its guess."""

    def __init__(self, follow: bool) -> None:
        self.follow = follow

    def predict(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits = np.full((len(obs), GAME.n_main_actions + 2 * 5), -30.0, np.float32)
        kind = obs[:, cell(1, 0) : cell(1, 0) + 4].argmax(axis=1)
        value = obs[:, cell(1, 0) + 4 : cell(1, 0) + 7].argmax(axis=1)
        told = kind > 0
        guess = 1 + np.where(kind == 3, value, kind - 1) if self.follow else np.ones(len(obs), int)
        main = np.where(told, guess, ask_action(GAME, 1, 0))
        logits[np.arange(len(obs)), main] = 30.0
        logits[:, GAME.n_main_actions] = logits[:, GAME.n_main_actions + 5] = 30.0
        return logits, np.zeros(len(obs), np.float32)


@pytest.mark.parametrize(("follow", "expected"), [(True, 1.0), (False, 0.0)])
def test_an_agent_that_acts_on_the_answer_is_fully_influenced(
    tmp_path: Path, follow: bool, expected: float
) -> None:
    net = AnswerFollower(follow)
    pool = LearnerPool(LearnersCfg(), tmp_path)
    member = Member("a0", 0, 0, pool.add("a0", net))  # type: ignore[arg-type]
    fleet = Fleet(pool, [member], lambda m: NetCfg(), remote_wait=0.0)
    sim = BatchSim(GAME, batch=8, seed=1)
    influence = Influence(fleet, GAME, [GAME.n_main_actions, 5, 5])
    obs_prev, obs = None, sim.reset(0)
    for _ in range(GAME.max_steps):
        logits, _ = net.predict(obs[:, 0])
        if obs_prev is not None:
            influence.step(obs_prev, obs, [logits], np.ones((8, 2), bool))
        main = logits[:, : GAME.n_main_actions].argmax(axis=1)
        obs_prev = obs.copy()
        obs, *_ = sim.step(np.stack([main, np.zeros(8, int)], 1), np.zeros((8, 2, 2), int))
    fleet.close()
    assert influence.count[0] > 0
    assert influence.means() == [pytest.approx(expected, abs=1e-6)]
