"""BatchSim.allowed_actions: a masked action is exactly one the game punishes for nothing.

Random play over many episodes; before each step the mask is taken, after it the step's info
(or the observation the agent acted on) says what the action was: a masked guess is one of
the penalised outcomes and an allowed one is right or wrong about a goal; a masked reply is an
unnecessary one; a masked question is to oneself or about something the agent knows.
"""

from __future__ import annotations

import numpy as np
import pytest
from casi_sim import BatchSim
from casi_sim.actions import (
    CELL_DIRECT,
    CELL_FLAGS,
    CELL_SOLVED,
    GUESS_CORRECT,
    GUESS_INCORRECT,
    IGNORE,
    N_INTENTIONS,
)

from .conftest import game

GAMES = {
    "two learners": game(),
    "three learners, two guesses": game(
        agents=["learner"] * 3,
        attrs={"count": 5, "direct": 2, "goal": 2, "values": 3},
        incentives={"max_guesses_per_attr": 2},
        max_steps=8,
    ),
}


def random_play(cfg, steps_seen: dict[str, int]):
    """Yields (allowed main, allowed intentions, obs, main, intentions, info, acting) per step."""
    sim = BatchSim(cfg, batch=256, seed=5)
    obs = sim.reset(5)
    rng = np.random.default_rng(0)
    b, na = sim.batch, sim.n_agents
    done = np.zeros((b, na), bool)
    for _ in range(cfg.max_steps):
        main_ok, say_ok = sim.allowed_actions()
        main = rng.integers(0, sim.n_main_actions, (b, na))
        intentions = np.zeros((b, na, na), np.int64)  # one reply at most per agent and step
        slot = rng.integers(0, na, (b, na))
        intentions[np.arange(b)[:, None], np.arange(na)[None, :], slot] = rng.integers(
            0, N_INTENTIONS, (b, na)
        )
        acting = ~done
        next_obs, _, done, info = sim.step(main, intentions)
        steps_seen["steps"] += 1
        yield main_ok, say_ok, obs, main, intentions, info, acting
        obs = next_obs


@pytest.mark.parametrize("name", list(GAMES))
def test_masked_actions_are_the_pointless_ones(name):
    cfg = GAMES[name]
    c, m = cfg.attrs.count, cfg.attrs.values
    seen = {"steps": 0, "masked guess": 0, "allowed guess": 0, "masked reply": 0,
            "allowed reply": 0, "masked ask": 0, "allowed ask": 0}  # fmt: skip
    for main_ok, say_ok, obs, main, intentions, info, acting in random_play(cfg, seen):
        assert main_ok[..., 0].all() and say_ok[..., IGNORE].all()
        for b, i in zip(*np.nonzero(acting), strict=True):
            action, ok = main[b, i], main_ok[b, i, main[b, i]]
            if 1 <= action <= c * m:
                outcome = int(np.argmax(info["guesses"][b, i]))
                assert ok == (outcome in (GUESS_CORRECT, GUESS_INCORRECT))
                seen["allowed guess" if ok else "masked guess"] += 1
            elif action > c * m:
                j, a = divmod(int(action) - 1 - c * m, c)
                cell = obs[b, i, a * (CELL_FLAGS + m) :]
                knows = cell[CELL_DIRECT] == 1 or cell[CELL_SOLVED] == 1
                assert ok == (j != i and not knows)
                assert info["asked_self"][b, i] == (j == i)
                seen["allowed ask" if ok else "masked ask"] += 1
            q = int(np.flatnonzero(intentions[b, i])[0]) if intentions[b, i].any() else None
            if q is None:
                continue
            ok = say_ok[b, i, q, intentions[b, i, q]]
            if q == i:
                assert not ok  # the game ignores the own slot
                continue
            assert ok == (info["unnecessary"][b, i] == 0)
            seen["allowed reply" if ok else "masked reply"] += 1
    assert all(count > 0 for count in seen.values()), seen


def test_a_mask_has_the_action_layout():
    cfg = GAMES["two learners"]
    sim = BatchSim(cfg, batch=3)
    sim.reset(0)
    main_ok, say_ok = sim.allowed_actions()
    assert main_ok.shape == (3, cfg.n_agents, cfg.n_main_actions) and main_ok.dtype == bool
    assert say_ok.shape == (3, cfg.n_agents, cfg.n_agents, N_INTENTIONS)
    assert not say_ok[..., 1:].any()  # nobody has asked anything yet
