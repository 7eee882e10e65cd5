"""The PettingZoo view: PettingZoo's own checkers, and what it exposes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from casi_sim.actions import COMPLETE_TRUTH, guess_action
from casi_sim.pettingzoo import parallel_env
from pettingzoo.test import parallel_api_test, parallel_seed_test

from .conftest import DISTINCT

GAME = {
    "agents": ["learner", "honest", "learner"],
    "max_steps": 6,
    "attrs": {"count": 4, "direct": 2, "goal": 1, "values": 3},
}


def test_parallel_api_test():
    parallel_api_test(parallel_env(**GAME), num_cycles=50)


def test_parallel_api_test_end_on_first_win():
    parallel_api_test(parallel_env(**{**GAME, "end_on_first_win": True, "max_steps": 30}))


def test_parallel_seed_test():
    parallel_seed_test(lambda: parallel_env(**GAME, seed=3), num_cycles=20)


def test_agents_spaces_and_observations():
    env = parallel_env(**GAME)
    assert env.possible_agents == ["a0", "a2"]
    obs, infos = env.reset(seed=1)
    assert set(obs) == {"a0", "a2"} and infos == {"a0": {}, "a2": {}}
    space = env.action_space("a0")
    assert space.nvec.tolist() == [1 + 4 * 3 + 3 * 4, 5, 5, 5]
    box = env.observation_space("a2")
    assert box.shape == (4 * 7 + 3 * 4 * 7 + 2 * 3 * 4 + 2,) and box.dtype == np.float32
    assert all(box.contains(o) for o in obs.values())


def test_win_terminates_and_time_truncates():
    env = parallel_env(**{**GAME, "incentives": DISTINCT})
    env.reset(seed=2)
    st = env._sim.state()
    goal = int(np.flatnonzero(st["goal"][0, 0])[0])
    win = guess_action(env.cfg, goal, int(st["values"][0, goal]))
    _, rewards, terms, truncs, infos = env.step(
        {"a0": [win, 0, 0, 0], "a2": [0, COMPLETE_TRUTH, 0, 0]}
    )
    assert rewards == {"a0": 1100.0, "a2": -19.0}
    assert terms == {"a0": True, "a2": False} and truncs == {"a0": False, "a2": False}
    assert bool(infos["a0"]["won"]) and infos["a2"]["unnecessary"] == 1
    assert env.agents == ["a2"]
    with pytest.raises(ValueError, match="'a0', which is not a live agent"):
        env.step({"a0": [0, 0, 0, 0]})
    for _ in range(5):
        _, _, terms, truncs, _ = env.step({})
    assert terms == {"a2": False} and truncs == {"a2": True} and env.agents == []


def test_needs_a_learner_slot():
    with pytest.raises(ValueError, match="at least one 'learner' slot"):
        parallel_env(**{**GAME, "agents": ["honest", "random"]})


def test_import_casi_sim_does_not_import_pettingzoo():
    code = "import sys, casi_sim; assert 'pettingzoo' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
