"""The PettingZoo view: PettingZoo's own checkers, and what it exposes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from casi_sim import GameConfig
from casi_sim.actions import COMPLETE_TRUTH, ask_action, guess_action
from casi_sim.pettingzoo import CasiParallelEnv, parallel_env
from gymnasium.utils.env_checker import data_equivalence
from pettingzoo.test import parallel_api_test, parallel_seed_test, render_test, state_test
from pettingzoo.utils import parallel_to_aec

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


def test_parallel_seed_test_keep_finished():
    parallel_seed_test(lambda: parallel_env(**GAME, seed=3, keep_finished=True), num_cycles=20)


def test_state_test():
    state_test(parallel_to_aec(parallel_env(**GAME)), parallel_env(**GAME), num_cycles=20)


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


def win_for_a0(env) -> int:
    """The main action with which a0 wins at once (its one goal, guessed right)."""
    st = env._sim.state()
    goal = int(np.flatnonzero(st["goal"][0, 0])[0])
    return guess_action(env.cfg, goal, int(st["values"][0, goal]))


def test_keep_finished_keeps_a_winner_until_the_episode_ends():
    env = parallel_env(**{**GAME, "incentives": DISTINCT}, keep_finished=True)
    env.reset(seed=2)
    _, rewards, terms, truncs, infos = env.step(
        {"a0": [win_for_a0(env), 0, 0, 0], "a2": [0, COMPLETE_TRUTH, 0, 0]}
    )
    assert rewards == {"a0": 1100.0, "a2": -19.0} and terms == {"a0": True, "a2": False}
    assert env.agents == ["a0", "a2"]
    ask_a2 = ask_action(env.cfg, 2, 0)
    for t in range(2, 7):
        obs, rewards, terms, truncs, infos = env.step(
            {"a0": [ask_a2, COMPLETE_TRUTH, 0, COMPLETE_TRUTH], "a2": [0, 0, 0, 0]}
        )
        assert set(obs) == {"a0", "a2"} and obs["a0"][-1] == 1.0
        assert rewards == {"a0": 0.0, "a2": 0.0}, f"t = {t}: a0's ask was not ignored"
        assert infos["a0"]["asked"] == 0 and infos["a2"]["unnecessary"] == 0
        assert terms == {"a0": True, "a2": False}
        assert truncs == {"a0": False, "a2": t == 6}
        assert env.agents == ([] if t == 6 else ["a0", "a2"])


def test_keep_finished_end_on_first_win_ends_everyone():
    env = parallel_env(**GAME, end_on_first_win=True, keep_finished=True)
    env.reset(seed=2)
    _, _, terms, truncs, _ = env.step({"a0": [win_for_a0(env), 0, 0, 0]})
    assert terms == {"a0": True, "a2": True} and truncs == {"a0": False, "a2": False}
    assert env.agents == []


@pytest.mark.parametrize("keep_finished", [False, True])
def test_step_after_the_end_names_the_fix(keep_finished):
    env = parallel_env(**GAME, keep_finished=keep_finished)
    env.reset(seed=0)
    for _ in range(6):
        env.step({})
    with pytest.raises(RuntimeError, match="after the episode ended.*call reset"):
        env.step({})
    env.reset()
    assert env.agents == ["a0", "a2"]


def test_arguments_are_keywords():
    with pytest.raises(TypeError, match=r"keyword arguments only, got 1 positional \(\['learner'"):
        parallel_env(["learner", "honest"])
    with pytest.raises(TypeError, match="CasiParallelEnv\\(\\) takes keyword arguments only"):
        CasiParallelEnv(GameConfig(**GAME))
    with pytest.raises(TypeError, match="keep_finished must be True or False, got 'yes'"):
        parallel_env(**GAME, keep_finished="yes")
    with pytest.raises(TypeError, match="needs cfg=GameConfig"):
        CasiParallelEnv(seed=1)
    assert CasiParallelEnv(cfg=GameConfig(**GAME), seed=1).possible_agents == ["a0", "a2"]


def test_state_is_every_slot_then_the_values():
    env = parallel_env(**GAME)
    with pytest.raises(RuntimeError, match="call reset"):
        env.state()
    obs, _ = env.reset(seed=4)
    n, c, m = env.cfg.obs_dim, 4, 3
    assert env.state_space.shape == (3 * n + c * m,)
    for _ in range(3):
        state = env.state()
        assert env.state_space.contains(state)
        assert np.array_equal(state[:n], obs["a0"]) and np.array_equal(
            state[2 * n : 3 * n], obs["a2"]
        )
        assert state[n : 2 * n].sum() > 0, "the honest slot's observation is in the state"
        values = state[3 * n :].reshape(c, m)
        assert np.array_equal(values.argmax(1), env._sim.state()["values"][0])
        assert values.sum() == c
        # noops: a sampled guess could win and take the agent out of obs (it did, once)
        obs, *_ = env.step({a: np.zeros(env.action_space(a).shape, np.int64) for a in env.agents})


def test_render_test():
    def make(render_mode=None):
        return parallel_to_aec(parallel_env(**GAME, render_mode=render_mode))

    render_test(make, custom_tests={"ansi": lambda text: text.startswith("step ")})


def test_ansi_render_tells_the_last_step():
    env = parallel_env(**GAME, render_mode="ansi", keep_finished=True)
    env.reset(seed=2)
    st = env._sim.state()
    goal = int(np.flatnonzero(st["goal"][0, 0])[0])
    value = int(st["values"][0, goal])
    assert env.render().splitlines()[:2] == [
        "step 0",
        "world: " + ", ".join(f"attr {a} = {v}" for a, v in enumerate(st["values"][0])),
    ]
    env.step({"a0": [ask_action(env.cfg, 1, goal), 0, 0, 0]})
    assert f"  a0 asks a1 about attr {goal}" in env.render().splitlines()
    env.step({"a0": [guess_action(env.cfg, goal, value), 0, 0, 0]})
    text = env.render().splitlines()
    assert text[0] == "step 2"
    assert f'  a1 answers a0 about attr {goal}: "it is {value}" (complete truth)' in text
    assert f"  a0 guesses attr {goal} = {value}: correct" in text
    assert "  a0 has solved all its goals and wins" in text


def test_render_changes_nothing_in_the_game():
    quiet, told = parallel_env(**GAME), parallel_env(**GAME, render_mode="ansi")
    assert data_equivalence(quiet.reset(seed=5), told.reset(seed=5))
    rng = np.random.default_rng(1)
    while quiet.agents:
        actions = {a: rng.integers(quiet.action_space(a).nvec) for a in quiet.agents}
        assert data_equivalence(quiet.step(actions), told.step(actions))
    assert told.agents == []


def test_render_modes():
    assert parallel_env(**GAME).render() is None
    with pytest.raises(ValueError, match=r"render_mode must be None or one of \['ansi', 'human'\]"):
        parallel_env(**GAME, render_mode="rgb_array")
    with pytest.raises(RuntimeError, match="call reset"):
        parallel_env(**GAME, render_mode="ansi").render()


def test_needs_a_learner_slot():
    with pytest.raises(ValueError, match="at least one 'learner' slot"):
        parallel_env(**{**GAME, "agents": ["honest", "random"]})


def test_import_casi_sim_does_not_import_pettingzoo():
    code = "import sys, casi_sim; assert 'pettingzoo' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
