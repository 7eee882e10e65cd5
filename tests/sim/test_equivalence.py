"""The numba kernel equals the reference rules step for step, bit for bit, on random play."""

from __future__ import annotations

import numpy as np
import pytest
from casi_sim import BatchSim, GameConfig
from casi_sim.reference import ReferenceSim

CONFIGS = {
    "exp2": GameConfig(
        agents=["learner", "honest"],
        max_steps=10,
        attrs={"count": 4, "direct": 2, "goal": 1, "values": 4},
    ),
    "three_mixed": GameConfig(
        agents=["learner", "random", "liar"],
        max_steps=8,
        attrs={"count": 5, "direct": 2, "goal": 2, "values": 3},
        incentives={"max_guesses_per_attr": 2, "cost_ask_question": 0.3},
    ),
    "four_first_win": GameConfig(
        agents=["learner", "learner", "silent", "random"],
        max_steps=12,
        attrs={"count": 6, "direct": 1, "goal": 2, "values": 2},
        end_on_first_win=True,
        incentives={"reward_win": 0.7, "cost_unnecessary_reply": 1.1},
    ),
    "fixed_learners": GameConfig(
        agents=["learner", "learner", "honest"],
        max_steps=6,
        init="fixed",
        attrs={"count": 4, "direct": 1, "goal": 1, "values": 5},
        incentives={"max_guesses_per_attr": 3},
    ),
    "three_learners": GameConfig(
        agents=["learner", "honest", "learner", "liar", "learner"],
        max_steps=8,
        attrs={"count": 6, "direct": 2, "goal": 2, "values": 3},
        incentives={"max_guesses_per_attr": 2},
    ),
}


def with_mechanisms(cfg: GameConfig, seed: int) -> GameConfig:
    """``cfg`` with random nonzero ``prosocial`` and ``reward_helpful_answer``."""
    gen = np.random.default_rng(seed)
    incentives = {
        **cfg.incentives.model_dump(),
        "prosocial": float(gen.uniform(0.05, 1.5)),
        "reward_helpful_answer": float(gen.uniform(0.5, 60.0)),
    }
    return GameConfig.model_validate({**cfg.model_dump(), "incentives": incentives})


MECHANISMS = {
    f"{name}+mechanisms": with_mechanisms(cfg, seed)
    for seed, (name, cfg) in enumerate(CONFIGS.items())
}


def random_actions(cfg: GameConfig, state: dict, gen: np.random.Generator):
    """Uniform play, mixed with guesses of goal attributes and questions, so that agents win
    and answers flow; garbage in the slots of scripted and done agents."""
    b_size, na = state["won"].shape
    c, m = cfg.attrs.count, cfg.attrs.values
    main = gen.integers(0, cfg.n_main_actions, (b_size, na))
    for b in range(b_size):
        for i in range(na):
            roll = gen.random()
            goals = np.flatnonzero(state["goal"][b, i])
            if roll < 0.25:
                main[b, i] = 1 + gen.choice(goals) * m + gen.integers(m)
            elif roll < 0.5:
                main[b, i] = 1 + c * m + gen.integers(na) * c + gen.integers(c)
    intentions = gen.integers(0, 5, (b_size, na, na))
    scripted = np.array([k != "learner" for k in cfg.agents])
    junk = scripted[None, :] | state["done"]
    main[junk] = -1
    intentions[junk] = 9
    return main, intentions


def assert_same(kernel_out, reference_out, where: str) -> None:
    names = ("obs", "reward", "done")
    for name, x, y in zip(names, kernel_out[:3], reference_out[:3], strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape, f"{where}: {name}"
        assert np.array_equal(x, y), f"{where}: {name} differs"
    info_k, info_r = kernel_out[3], reference_out[3]
    assert info_k.keys() == info_r.keys()
    for key in info_k:
        assert info_k[key].dtype == info_r[key].dtype, f"{where}: info[{key}] dtype"
        assert np.array_equal(info_k[key], info_r[key]), f"{where}: info[{key}] differs"


def without_mechanisms(cfg: GameConfig) -> GameConfig:
    incentives = {**cfg.incentives.model_dump(), "prosocial": 0, "reward_helpful_answer": 0}
    return GameConfig.model_validate({**cfg.model_dump(), "incentives": incentives})


@pytest.mark.parametrize("name", list(CONFIGS) + list(MECHANISMS))
def test_kernel_equals_reference(name):
    cfg = {**CONFIGS, **MECHANISMS}[name]
    batch = 32
    fast, slow = BatchSim(cfg, batch, seed=99), ReferenceSim(cfg, batch, seed=99)
    # the same game without the mechanisms: they change rewards, never the course of play
    plain = BatchSim(without_mechanisms(cfg), batch, seed=99)
    learners = cfg.agents.count("learner")
    shared = helped = 0
    gen = np.random.default_rng(len(name))
    steps = wins = 0
    for episode, seed in enumerate([None, None, 5, None, 5, None]):
        obs_k, obs_r = fast.reset(seed), slow.reset(seed)
        plain.reset(seed)
        assert np.array_equal(obs_k, obs_r), f"reset {episode}"
        for t in range(cfg.max_steps):
            state = fast.state()
            ref_state = slow.state()
            for key in state:
                assert np.array_equal(state[key], ref_state[key]), f"state {key} at {t}"
            main, intentions = random_actions(cfg, state, gen)
            out_k = fast.step(main, intentions)
            out_r = slow.step(main, intentions)
            assert_same(out_k, out_r, f"{name} episode {episode} step {t}")
            steps += batch
            wins += int(out_k[3]["won"].sum())
            out_p = plain.step(main, intentions)
            for x, y in zip((out_k[0], out_k[2]), (out_p[0], out_p[2]), strict=True):
                assert np.array_equal(x, y), f"{name}: the mechanisms changed the play"
            assert np.array_equal(out_p[1], out_p[3]["own_reward"])
            shared += int((out_k[1] != out_k[3]["own_reward"]).sum())
            helped += int((out_k[3]["own_reward"] != out_p[1]).sum())
        assert out_k[2].all()
    assert steps >= 1000 and wins > 20
    if name not in MECHANISMS:
        assert shared == helped == 0
    else:
        assert helped >= 5  # rare in random play (7 to 16 times here), but every time exact
        assert shared >= 100 if learners >= 2 else shared == 0


def test_updated_observations_equal_a_full_rewrite():
    """The kernel updates only what a step changed; the result equals writing every entry
    again from the state."""
    from casi_sim import kernel

    cfg = CONFIGS["four_first_win"]
    sim = BatchSim(cfg, 64, seed=2)
    gen = np.random.default_rng(0)
    sim.reset()
    for _ in range(cfg.max_steps):
        obs, _, _, _ = sim.step(*random_actions(cfg, sim.state(), gen))
        full = np.full_like(obs, 7.0)
        state = kernel.plain(sim._game, sim._worlds, sim._progress, sim._channels)
        kernel.observe_kernel(*state, full)
        assert np.array_equal(obs, full)
