"""The consistent lie (SPEC 2.3): properties of the function and of lies told in a game."""

from __future__ import annotations

import numpy as np
from casi_sim import BatchSim, kernel, rng
from casi_sim.actions import SPECIFIC_LIE, ask_action
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import blocks, game, outside, world

salts = st.integers(0, 2**64 - 1)
agents = st.integers(0, 15)
attrs = st.integers(0, 63)


@settings(max_examples=300, deadline=None)
@given(salt=salts, q=agents, a=attrs, m=st.integers(2, 40), data=st.data())
def test_lie_about_a_known_value_is_never_the_truth(salt, q, a, m, data):
    v = data.draw(st.integers(0, m - 1))
    lie = rng.lie(salt, q, a, m, v)
    assert 0 <= lie < m and lie != v
    assert kernel.lie(np.uint64(salt), q, a, m, v) == lie


@settings(max_examples=300, deadline=None)
@given(salt=salts, q=agents, a=attrs, m=st.integers(2, 40))
def test_lie_about_an_unknown_value_is_in_range(salt, q, a, m):
    lie = rng.lie(salt, q, a, m, None)
    assert 0 <= lie < m
    assert kernel.lie(np.uint64(salt), q, a, m, -1) == lie
    assert lie == rng.lie_hash(salt, q, a) % m


@settings(max_examples=100, deadline=None)
@given(salt=salts, q=agents, a=attrs, m=st.integers(2, 9), data=st.data())
def test_lie_is_a_function_of_salt_questioner_attr_and_value(salt, q, a, m, data):
    v = data.draw(st.integers(0, m - 1))
    assert rng.lie(salt, q, a, m, v) == rng.lie(salt, q, a, m, v)
    # with the value known the lie is the unknown-case word shifted past the truth
    h = rng.lie_hash(salt, q, a)
    assert rng.lie(salt, q, a, m, v) == (v + 1 + h % (m - 1)) % m


def test_different_salts_tell_different_lies():
    gen = np.random.default_rng(5)
    salts_a = gen.integers(0, 2**63, 4000, dtype=np.int64)
    salts_b = gen.integers(0, 2**63, 4000, dtype=np.int64)
    m, v = 4, 2
    lies_a = np.array([rng.lie(int(s), 1, 3, m, v) for s in salts_a])
    lies_b = np.array([rng.lie(int(s), 1, 3, m, v) for s in salts_b])
    # three wrong values, uniformly: two salts agree one time in three
    assert abs((lies_a == lies_b).mean() - 1 / 3) < 0.04
    counts = np.bincount(lies_a, minlength=m)
    assert counts[v] == 0 and (abs(counts[[0, 1, 3]] / 4000 - 1 / 3) < 0.04).all()
    # the same salt, other questioners: lies differ too
    others = np.array([rng.lie(int(s), 2, 3, m, v) for s in salts_a])
    assert abs((lies_a == others).mean() - 1 / 3) < 0.04


def test_liar_tells_the_same_lie_all_episode():
    cfg = game(agents=["learner", "liar", "learner"], max_steps=8)
    sim = BatchSim(cfg, batch=16, seed=11)
    sim.reset()
    seen: dict[tuple[int, int], set[int]] = {}
    for b in range(16):
        w = world(sim, b)
        known = w["direct"][1][0]
        unknown = outside(w, 1)[0]
        for attr in (known, unknown):
            seen[(b, attr)] = set()
    ws = [world(sim, b) for b in range(16)]
    for step in range(6):
        pick = "known" if step % 2 == 0 else "unknown"
        main = np.zeros((16, 3), np.int64)
        for b in range(16):
            attr = ws[b]["direct"][1][0] if pick == "known" else outside(ws[b], 1)[0]
            main[b, 0] = ask_action(cfg, 1, attr)
            main[b, 2] = ask_action(cfg, 1, attr)
        obs, _, _, _ = sim.step(main, np.zeros((16, 3, 3), np.int64))
        if step == 0:
            continue
        prev = "known" if pick == "unknown" else "unknown"
        for b in range(16):
            attr = ws[b]["direct"][1][0] if prev == "known" else outside(ws[b], 1)[0]
            for q in (0, 2):
                got = blocks(cfg, obs[b, q]).answers[1, attr]
                assert got[3] == 1.0  # a value
                value = int(np.argmax(got[4:]))
                v = int(ws[b]["values"][attr])
                expected = rng.lie(
                    int(ws[b]["salt"][1]), q, attr, 3, v if prev == "known" else None
                )
                assert value == expected
                seen[(b, attr)].add((q, value))
    # each (questioner, attribute) was told one lie, however often it asked
    for told in seen.values():
        assert len({q for q, _ in told}) == len(told)
    assert SPECIFIC_LIE == 1


def test_kernel_hash_equals_the_reference_hash():
    gen = np.random.default_rng(1)
    for x in gen.integers(0, 2**63, 200, dtype=np.int64).tolist() + [0, 2**64 - 1]:
        assert int(kernel.mix(np.uint64(x))) == rng.mix(x)
        assert int(kernel.episode_key(np.uint64(x), 3, 7)) == rng.episode_key(x, 3, 7)
        key = rng.episode_key(x, 0, 0)
        assert int(kernel.draw(np.uint64(key), np.uint64(5), 1, 2, 3)) == rng.draw(key, 5, 1, 2, 3)
