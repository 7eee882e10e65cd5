"""One test per rule of SPEC 2.3, each run on the numba kernel and on the reference."""

from __future__ import annotations

import numpy as np
import pytest
from casi_sim import rng
from casi_sim.actions import (
    COMPLETE_TRUTH,
    GENERAL_LIE,
    IGNORE,
    INCOMPLETE_TRUTH,
    SPECIFIC_LIE,
    ask_action,
    guess_action,
)

from .conftest import act, blocks, game, outside, world

NONE, UNKNOWN, KNOWN, VALUE = range(4)


def wrong(value: int, m: int) -> int:
    return (value + 1) % m


# --- guesses, in the order the cases are checked ---------------------------------------------


def test_excessive_guess_comes_first_and_does_not_count(make_sim):
    cfg = game()
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    a = w["direct"][0][0]
    g = guess_action(cfg, a, 0)
    _, r, _, info = act(sim, {0: g})
    assert r[0, 0] == -11  # known
    _, r, _, info = act(sim, {0: g})
    assert r[0, 0] == -5  # excessive beats known
    assert info["guesses"][0, 0].tolist() == [1, 0, 0, 0, 0, 0]
    assert sim.state()["guesses"][0, 0, a] == 1  # not incremented by case 1


def test_known_guess_beats_non_goal(make_sim):
    cfg = game()
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    a = w["direct"][0][0]  # a direct attribute is never a goal
    obs, r, _, info = act(sim, {0: guess_action(cfg, a, int(w["values"][a]))})
    assert r[0].tolist() == [-11, 0]
    assert info["guesses"][0, 0].tolist() == [0, 1, 0, 0, 0, 0]
    assert blocks(cfg, obs[0, 0]).own[a, 3] == 1.0  # one guess used of one


def test_non_goal_guess(make_sim):
    cfg = game()
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    a = outside(w, 0)[0]
    _, r, _, info = act(sim, {0: guess_action(cfg, a, int(w["values"][a]))})
    assert r[0, 0] == -13
    assert info["guesses"][0, 0].tolist() == [0, 0, 1, 0, 0, 0]
    assert sim.state()["guesses"][0, 0, a] == 1


def test_solved_guess_then_win(make_sim):
    cfg = game(
        agents=["learner", "learner", "learner"],
        attrs={"count": 5, "direct": 1, "goal": 2, "values": 3},
        incentives={"max_guesses_per_attr": 2},
    )
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    a, b = w["goal"][0]
    va, vb = int(w["values"][a]), int(w["values"][b])
    obs, r, done, info = act(sim, {0: guess_action(cfg, a, va)})
    assert r[0, 0] == 100 and not done[0, 0]
    assert info["guesses"][0, 0].tolist() == [0, 0, 0, 0, 1, 0]
    own = blocks(cfg, obs[0, 0]).own
    assert own[a, 2] == 1.0 and own[a, 3] == 0.5 and own[a, 4 + va] == 1.0  # solved, known
    _, r, _, info = act(sim, {0: guess_action(cfg, a, va)})
    assert r[0, 0] == -17
    assert info["guesses"][0, 0].tolist() == [0, 0, 0, 1, 0, 0]
    _, r, done, info = act(sim, {0: guess_action(cfg, b, vb)})
    assert r[0, 0] == 1100 and done[0, 0] and info["won"][0, 0]
    assert not done[0, 1] and not done[0, 2]


def test_incorrect_then_excessive_even_when_right(make_sim):
    cfg = game()
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    a = w["goal"][0][0]
    v = int(w["values"][a])
    _, r, _, info = act(sim, {0: guess_action(cfg, a, wrong(v, 3))})
    assert r[0, 0] == -7
    assert info["guesses"][0, 0].tolist() == [0, 0, 0, 0, 0, 1]
    _, r, done, _ = act(sim, {0: guess_action(cfg, a, v)})
    assert r[0, 0] == -5 and not done[0, 0]


def test_second_guess_allowed_when_max_guesses_is_two(make_sim):
    cfg = game(incentives={"max_guesses_per_attr": 2})
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    a = w["goal"][0][0]
    v = int(w["values"][a])
    obs, r, _, _ = act(sim, {0: guess_action(cfg, a, wrong(v, 3))})
    assert r[0, 0] == -7 and blocks(cfg, obs[0, 0]).own[a, 3] == 0.5
    _, r, done, info = act(sim, {0: guess_action(cfg, a, v)})
    assert r[0, 0] == 1100 and done[0, 0] and info["won"][0, 0]
    assert sim.state()["won"][0].tolist() == [True, False]


# --- questions and replies --------------------------------------------------------------------


def ask_then_reply(make_sim, intention: int, knows: bool, cfg=None):
    """Agent 0 asks agent 1 about an attribute 1 knows (or not); 1 replies with intention."""
    cfg = cfg or game()
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    a = w["direct"][1][0] if knows else outside(w, 1)[0]
    obs, r, _, info = act(sim, {0: ask_action(cfg, 1, a)})
    assert r[0].tolist() == [-1, 0] and info["asked"][0].tolist() == [1, 0]
    assert blocks(cfg, obs[0, 1]).received[0].tolist() == np.eye(5)[a].tolist()
    assert blocks(cfg, obs[0, 0]).asked[1].tolist() == np.eye(5)[a].tolist()
    obs, r, _, info = act(sim, say={(1, 0): intention})
    assert r[0].tolist() == [0, 0]  # answering a question is free
    assert info["answers"][0, 1].tolist() == np.eye(5, dtype=int)[intention].tolist()
    got = blocks(cfg, obs[0, 0]).answers[1, a]
    return got, w, a


def no_answers(blk, i: int) -> bool:
    """Agent i has received no answer: "none" from every other slot, zeros in its own."""
    others = [j for j in range(blk.answers.shape[0]) if j != i]
    return bool(
        (blk.answers[others, :, 0] == 1).all()
        and not blk.answers[others, :, 1:].any()
        and not blk.answers[i].any()
    )


def expect(kind: int, value: int | None = None, m: int = 3) -> list[float]:
    out = [0.0] * (4 + m)
    out[kind] = 1.0
    if value is not None:
        out[4 + value] = 1.0
    return out


@pytest.mark.parametrize(
    ("intention", "knows", "kind"),
    [
        (COMPLETE_TRUTH, False, UNKNOWN),
        (INCOMPLETE_TRUTH, True, KNOWN),
        (INCOMPLETE_TRUTH, False, UNKNOWN),
        (GENERAL_LIE, True, UNKNOWN),
        (GENERAL_LIE, False, KNOWN),
        (IGNORE, True, NONE),
        (IGNORE, False, NONE),
    ],
)
def test_reply_kinds(make_sim, intention, knows, kind):
    got, _, _ = ask_then_reply(make_sim, intention, knows)
    assert got.tolist() == expect(kind)


def test_complete_truth_about_a_known_attribute(make_sim):
    got, w, a = ask_then_reply(make_sim, COMPLETE_TRUTH, True)
    assert got.tolist() == expect(VALUE, int(w["values"][a]))


@pytest.mark.parametrize("knows", [True, False])
def test_specific_lie_is_the_salted_lie(make_sim, knows):
    got, w, a = ask_then_reply(make_sim, SPECIFIC_LIE, knows)
    v = int(w["values"][a])
    lie = rng.lie(int(w["salt"][1]), 0, a, 3, v if knows else None)
    assert got.tolist() == expect(VALUE, lie)
    if knows:
        assert lie != v


def test_truth_about_a_solved_attribute(make_sim):
    cfg = game(
        agents=["learner", "learner", "learner"],
        attrs={"count": 5, "direct": 1, "goal": 2, "values": 3},
    )
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    a = w["goal"][1][0]
    assert a not in w["direct"][1]
    act(sim, {1: guess_action(cfg, a, int(w["values"][a])), 0: ask_action(cfg, 1, a)})
    obs, _, _, _ = act(sim, say={(1, 0): COMPLETE_TRUTH})
    assert blocks(cfg, obs[0, 0]).answers[1, a].tolist() == expect(VALUE, int(w["values"][a]))


def test_latest_answer_replaces_the_previous_and_ignore_keeps_it(make_sim):
    cfg = game()
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    a = w["direct"][1][0]
    act(sim, {0: ask_action(cfg, 1, a)})
    act(sim, {0: ask_action(cfg, 1, a)}, {(1, 0): INCOMPLETE_TRUTH})
    obs, _, _, _ = act(sim, {0: ask_action(cfg, 1, a)}, {(1, 0): COMPLETE_TRUTH})
    assert blocks(cfg, obs[0, 0]).answers[1, a].tolist() == expect(VALUE, int(w["values"][a]))
    obs, _, _, info = act(sim, say={(1, 0): IGNORE})
    assert info["answers"][0, 1].tolist() == [1, 0, 0, 0, 0]
    assert blocks(cfg, obs[0, 0]).answers[1, a].tolist() == expect(VALUE, int(w["values"][a]))


def test_asking_oneself_costs_and_delivers_nothing(make_sim):
    cfg = game()
    sim = make_sim(cfg)
    sim.reset()
    obs, r, _, info = act(sim, {0: ask_action(cfg, 0, 2)})
    assert r[0].tolist() == [-3, 0]
    assert info["asked_self"][0].tolist() == [1, 0] and info["asked"][0].tolist() == [0, 0]
    b0 = blocks(cfg, obs[0, 0])
    assert not b0.asked.any() and not b0.received.any()
    # the own intention slot is ignored: no reply, no cost
    obs, r, _, info = act(sim, say={(0, 0): COMPLETE_TRUTH})
    assert r[0].tolist() == [0, 0] and not info["answers"].any()
    assert no_answers(blocks(cfg, obs[0, 0]), 0)


def test_unnecessary_replies_cost_once_per_slot(make_sim):
    cfg = game(agents=["learner", "learner", "learner"])
    sim = make_sim(cfg)
    sim.reset()
    act(sim, {0: ask_action(cfg, 2, 1)})  # 0 asks 2, nobody asks 1
    _, r, _, info = act(
        sim,
        say={(1, 0): COMPLETE_TRUTH, (1, 2): SPECIFIC_LIE, (2, 0): COMPLETE_TRUTH, (2, 1): 0},
    )
    assert r[0].tolist() == [0, -38, 0]
    assert info["unnecessary"][0].tolist() == [0, 2, 0]
    assert info["answers"][0].tolist() == [[0] * 5, [0] * 5, [0, 0, 0, 0, 1]]


def test_question_arrives_once(make_sim):
    cfg = game()
    sim = make_sim(cfg)
    sim.reset()
    act(sim, {0: ask_action(cfg, 1, 3)})
    act(sim)  # 1 does not answer in time
    obs, r, _, info = act(sim, say={(1, 0): COMPLETE_TRUTH})
    assert r[0, 1] == -19 and info["unnecessary"][0, 1] == 1
    assert no_answers(blocks(cfg, obs[0, 0]), 0)


# --- done, end of episode -----------------------------------------------------------------------


def win_now(cfg, sim, i: int) -> int:
    w = world(sim)
    a = w["goal"][i][0]
    return guess_action(cfg, a, int(w["values"][a]))


def test_done_agents_earn_zero_and_are_ignored(make_sim):
    cfg = game()
    sim = make_sim(cfg)
    sim.reset()
    _, r, done, _ = act(sim, {0: win_now(cfg, sim, 0)})
    assert r[0, 0] == 1100 and done[0].tolist() == [True, False]
    # a done agent's actions (even out of range) are ignored and earn nothing
    obs, r, done, info = act(sim, {0: -4, 1: ask_action(cfg, 0, 1)}, {(0, 1): 99})
    assert r[0].tolist() == [0, -1] and done[0].tolist() == [True, False]
    assert not info["asked"][0, 0] and not info["guesses"][0, 0].any()
    # the done agent does not answer the question it was asked
    obs, r, _, info = act(sim, say={(0, 1): COMPLETE_TRUTH})
    assert r[0].tolist() == [0, 0] and not info["answers"].any()
    assert no_answers(blocks(cfg, obs[0, 1]), 1)
    assert blocks(cfg, obs[0, 0]).done == 1.0


def test_end_on_first_win(make_sim):
    cfg = game(agents=["learner", "learner", "learner"], end_on_first_win=True)
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    wrong_guess = guess_action(cfg, w["goal"][1][0], wrong(int(w["values"][w["goal"][1][0]]), 3))
    obs, r, done, info = act(sim, {0: win_now(cfg, sim, 0), 1: wrong_guess})
    assert r[0].tolist() == [1100, -7, 0]  # the others' actions of that step still count
    assert done[0].tolist() == [True, True, True]
    assert info["won"][0].tolist() == [True, False, False]
    assert sim.state()["won"][0].tolist() == [True, False, False]
    assert [blocks(cfg, o).done for o in obs[0]] == [1.0, 1.0, 1.0]


def test_without_end_on_first_win_others_play_on(make_sim):
    cfg = game(agents=["learner", "learner", "learner"])
    sim = make_sim(cfg)
    sim.reset()
    _, _, done, _ = act(sim, {0: win_now(cfg, sim, 0)})
    assert done[0].tolist() == [True, False, False]


def test_everyone_is_done_at_max_steps(make_sim):
    cfg = game(max_steps=3)
    sim = make_sim(cfg)
    obs = sim.reset()
    assert blocks(cfg, obs[0, 0]).time == 0.0
    times = []
    for _ in range(3):
        obs, _, done, _ = act(sim)
        times.append(blocks(cfg, obs[0, 1]).time)
    assert times == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert done.all() and sim.state()["t"].tolist() == [3]
    with pytest.raises(RuntimeError, match="call reset"):
        act(sim)


# --- observation ------------------------------------------------------------------------------


def test_first_observation(make_sim):
    cfg = game(agents=["learner", "honest", "silent"])
    assert cfg.obs_dim == 5 * 7 + 3 * 5 * 7 + 2 * 3 * 5 + 2 == 172
    sim = make_sim(cfg, batch=3)
    obs = sim.reset()
    assert obs.shape == (3, 3, 172) and obs.dtype == np.float32
    st = sim.state()
    for b in range(3):
        for i in range(3):
            blk = blocks(cfg, obs[b, i])
            direct, goal = st["direct"][b, i], st["goal"][b, i]
            assert blk.own[:, 0].tolist() == direct.astype(float).tolist()
            assert blk.own[:, 1].tolist() == goal.astype(float).tolist()
            assert not blk.own[:, 2:4].any()
            for a in range(5):
                expected = np.eye(3)[st["values"][b, a]] if direct[a] else np.zeros(3)
                assert blk.own[a, 4:].tolist() == expected.tolist()
            others = [j for j in range(3) if j != i]
            assert (blk.answers[others, :, 0] == 1).all()  # "none" yet
            assert not blk.answers[others, :, 1:].any() and not blk.answers[i].any()
            assert not blk.received.any() and not blk.asked.any()
            assert (blk.time, blk.done) == (0.0, 0.0)


def test_questions_asked_and_received_this_step(make_sim):
    cfg = game(agents=["learner", "learner", "learner"])
    sim = make_sim(cfg)
    sim.reset()
    obs, _, _, _ = act(sim, {0: ask_action(cfg, 2, 4), 1: ask_action(cfg, 2, 0)})
    b0, b1, b2 = (blocks(cfg, obs[0, i]) for i in range(3))
    eye = np.eye(5)
    assert b0.asked.tolist() == [[0] * 5, [0] * 5, eye[4].tolist()]
    assert b1.asked.tolist() == [[0] * 5, [0] * 5, eye[0].tolist()]
    assert not b2.asked.any()
    assert b2.received.tolist() == [eye[4].tolist(), eye[0].tolist(), [0] * 5]
    assert not b0.received.any() and not b1.received.any()
    # the next step without questions clears both blocks
    obs, _, _, _ = act(sim)
    assert not obs[0][:, 5 * 7 + 3 * 5 * 7 : -2].any()


def test_scripted_slots_are_filled_by_the_simulator(make_sim):
    cfg = game(agents=["learner", "honest", "liar", "silent"])
    sim = make_sim(cfg)
    assert sim.learners == [0] and sim.n_agents == 4
    sim.reset()
    w = world(sim)
    asks = {0: ask_action(cfg, 1, w["direct"][1][0])}
    # garbage in the scripted slots is ignored, no ValueError
    na = 4
    main = np.full((1, na), 10_000)
    main[0, 0] = asks[0]
    intentions = np.full((1, na, na), -7)
    intentions[0, 0] = 0
    _, r, _, _ = sim.step(main, intentions)
    # honest and liar answer every slot, asked or not (unnecessary replies cost 19 each)
    assert r[0].tolist() == [-1, -19 * 3, -19 * 3, 0]
    obs, r, _, info = act(sim)
    assert r[0].tolist() == [0, -19 * 2, -19 * 3, 0]  # honest answered 0's question for free
    assert info["answers"][0, 1].tolist() == [0, 0, 0, 0, 1]
    a = w["direct"][1][0]
    assert blocks(cfg, obs[0, 0]).answers[1, a].tolist() == expect(VALUE, int(w["values"][a]))


def test_out_of_range_actions_name_episode_agent_and_value(make_sim):
    cfg = game()
    sim = make_sim(cfg, batch=3)
    sim.reset()
    main = np.zeros((3, 2), np.int64)
    main[2, 1] = cfg.n_main_actions
    assert cfg.n_main_actions == 1 + 5 * 3 + 2 * 5 == 26
    with pytest.raises(ValueError, match=r"episode 2, agent 1 .*\[0, 26\), got 26"):
        sim.step(main, np.zeros((3, 2, 2), np.int64))
    intentions = np.zeros((3, 2, 2), np.int64)
    intentions[1, 0, 1] = 5
    with pytest.raises(ValueError, match=r"episode 1, agent 0 towards agent 1 .* got 5"):
        sim.step(np.zeros((3, 2), np.int64), intentions)
    with pytest.raises(ValueError, match=r"main must have shape \[3, 2\], got \[2, 3\]"):
        sim.step(np.zeros((2, 3), np.int64), np.zeros((3, 2, 2), np.int64))
    with pytest.raises(ValueError, match="integer array, got dtype float64"):
        sim.step(np.zeros((3, 2)), np.zeros((3, 2, 2), np.int64))
    # an intention towards oneself is never read, so it is not checked
    intentions = np.zeros((3, 2, 2), np.int64)
    intentions[0, 1, 1] = 42
    sim.step(np.zeros((3, 2), np.int64), intentions)


def test_step_before_reset(make_sim):
    sim = make_sim(game())
    with pytest.raises(RuntimeError, match="reset"):
        act(sim)
