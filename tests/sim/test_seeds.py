"""Seeds and worlds (SPEC 2.2): reproducible rollouts, fresh or fixed worlds, valid goal sets."""

from __future__ import annotations

import numpy as np
import pytest
from casi_sim import BatchSim, GameConfig
from casi_sim.reference import ReferenceSim

from .conftest import game

CFG = game(agents=["learner", "random", "liar"], max_steps=5)


def rollout(sim, seed=None, steps: int = 5) -> list[np.ndarray]:
    """Observations and rewards of one episode of fixed learner actions."""
    out = [sim.reset(seed)]
    b, na = sim.batch, sim.cfg.n_agents
    main = np.tile(np.arange(na) * 3 + 1, (b, 1))
    for _ in range(steps):
        obs, reward, _, _ = sim.step(main, np.full((b, na, na), 4))
        out += [obs, reward]
    return out


def same(xs: list[np.ndarray], ys: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(xs, ys, strict=True))


@pytest.mark.parametrize("cls", [BatchSim, ReferenceSim])
def test_same_seed_same_episodes(cls):
    a, b = cls(CFG, 6, seed=3), cls(CFG, 6, seed=3)
    for _ in range(3):
        assert same(rollout(a), rollout(b))


def test_different_seeds_different_worlds():
    a, b = BatchSim(CFG, 8, seed=1), BatchSim(CFG, 8, seed=2)
    a.reset(), b.reset()
    sa, sb = a.state(), b.state()
    assert not np.array_equal(sa["values"], sb["values"])
    assert not np.array_equal(sa["direct"], sb["direct"])
    assert not (sa["salt"] == sb["salt"]).any()
    assert not same(rollout(a), rollout(b))


def test_next_reset_draws_new_worlds():
    sim = BatchSim(CFG, 8, seed=1)
    sim.reset()
    first = sim.state()
    sim.reset()
    second = sim.state()
    assert not np.array_equal(first["values"], second["values"])
    # and the episodes of one batch differ from each other
    assert len({first["values"][b].tobytes() for b in range(8)}) > 1


def test_reset_with_a_seed_replays_the_stream():
    sim = BatchSim(CFG, 4, seed=0)
    played = rollout(sim, seed=7)
    rollout(sim)  # the next episodes of stream 7
    assert same(rollout(sim, seed=7), played)
    # a new simulator built with seed 7 starts with the same episodes
    assert same(rollout(BatchSim(CFG, 4, seed=7)), played)
    assert same(rollout(ReferenceSim(CFG, 4, seed=0), seed=7), played)


def test_fixed_init_gives_the_same_world_every_episode():
    cfg = CFG.model_copy(update={"init": "fixed"})
    sim = BatchSim(cfg, 5, seed=21)
    worlds = []
    for seed in [None, None, 3, None]:
        sim.reset(seed)
        st = sim.state()
        worlds += [
            (st["values"][b], st["direct"][b], st["goal"][b], st["salt"][b]) for b in range(5)
        ]
    for values, direct, goal, salt in worlds[1:]:
        assert np.array_equal(values, worlds[0][0])
        assert np.array_equal(direct, worlds[0][1])
        assert np.array_equal(goal, worlds[0][2])
        assert np.array_equal(salt, worlds[0][3]), "the salts (and so the lies) are the world's"
    other = BatchSim(cfg, 1, seed=22)
    other.reset()
    assert not all(
        np.array_equal(x, y)
        for x, y in zip(
            (other.state()["values"][0], other.state()["direct"][0]), worlds[0][:2], strict=True
        )
    )


def check_worlds(cfg: GameConfig, state: dict) -> None:
    d, g, m = cfg.attrs.direct, cfg.attrs.goal, cfg.attrs.values
    direct, goal = state["direct"], state["goal"]
    assert ((state["values"] >= 0) & (state["values"] < m)).all()
    assert (direct.sum(-1) == d).all() and (goal.sum(-1) == g).all()
    assert not (direct & goal).any()  # no goal is known directly
    na = cfg.n_agents
    for i in range(na):
        others = np.delete(direct, i, axis=1).any(axis=1)  # [B, C]
        assert not (goal[:, i] & ~others).any()  # every goal is known by someone else


def test_worlds_follow_the_rules_and_are_uniform():
    cfg = game(agents=["learner"] * 3, attrs={"count": 5, "direct": 2, "goal": 2, "values": 3})
    sim = BatchSim(cfg, 3000, seed=4)
    sim.reset()
    st = sim.state()
    check_worlds(cfg, st)
    assert abs(np.bincount(st["values"].ravel(), minlength=3) / 15000 - 1 / 3).max() < 0.02
    assert abs(st["direct"].mean(axis=(0, 1)) - 2 / 5).max() < 0.03
    assert abs(st["goal"].mean(axis=(0, 1)) - 2 / 5).max() < 0.03


def test_rejection_sampling_finds_the_rare_worlds():
    # goal = (na - 1) * direct: the two direct sets must not overlap (1 draw in 6)
    cfg = game(attrs={"count": 4, "direct": 2, "goal": 2, "values": 2})
    sim = BatchSim(cfg, 500, seed=8)
    sim.reset()
    st = sim.state()
    check_worlds(cfg, st)
    assert not (st["direct"][:, 0] & st["direct"][:, 1]).any()
    ref = ReferenceSim(cfg, 20, seed=8)
    ref.reset()
    assert np.array_equal(ref.state()["direct"], st["direct"][:20])


def test_seed_must_be_an_integer():
    with pytest.raises(ValueError, match="seed must be an integer, got 1.5"):
        BatchSim(CFG, 2, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch must be a positive integer, got 0"):
        BatchSim(CFG, 0)
