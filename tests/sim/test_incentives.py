"""The incentive mechanisms beyond the original study: the prosocial term and the reward for a
helpful answer, each run on the numba kernel and on the reference."""

from __future__ import annotations

import pytest
from casi_sim.actions import (
    COMPLETE_TRUTH,
    GENERAL_LIE,
    INCOMPLETE_TRUTH,
    SPECIFIC_LIE,
    ask_action,
    guess_action,
)

from .conftest import act, game, outside, world

HELPFUL = 30


def right(cfg, w, a: int) -> int:
    return guess_action(cfg, a, int(w["values"][a]))


def wrong(cfg, w, a: int) -> int:
    return guess_action(cfg, a, (int(w["values"][a]) + 1) % cfg.attrs.values)


def rewards(out) -> tuple[list[float], list[float]]:
    """(reward, info["own_reward"]) of episode 0."""
    _, r, _, info = out
    assert info["own_reward"].dtype == r.dtype
    return r[0].tolist(), info["own_reward"][0].tolist()


# --- prosocial -----------------------------------------------------------------------------------


def test_prosocial_two_learners(make_sim):
    cfg = game(incentives={"prosocial": 0.5})
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    out = act(sim, {0: ask_action(cfg, 1, 0), 1: guess_action(cfg, outside(w, 1)[0], 0)})
    # own: ask -1, non-goal guess -13; each adds half the other's
    assert rewards(out) == ([-1 - 6.5, -13 - 0.5], [-1, -13])


def test_prosocial_three_learners_and_a_scripted_agent(make_sim):
    cfg = game(agents=["learner", "learner", "learner", "honest"], incentives={"prosocial": 0.5})
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    known = w["direct"][1][0]
    out = act(
        sim,
        {
            0: ask_action(cfg, 1, 0),
            1: guess_action(cfg, known, 0),
            2: guess_action(cfg, outside(w, 2)[0], 0),
        },
    )
    # own: -1, -11 (known), -13 (non-goal), and the honest agent's three unnecessary replies;
    # a learner adds half the mean of the other two learners, the honest agent's -57 is not in
    # any mean and it gets no term
    own = [-1, -11, -13, -57]
    assert rewards(out) == ([-1 - 6, -11 - 3.5, -13 - 3, -57], own)


def test_prosocial_agent_done_before_the_step_earns_zero_and_counts_as_zero(make_sim):
    cfg = game(agents=["learner", "learner", "learner"], incentives={"prosocial": 0.5})
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    win = right(cfg, w, w["goal"][0][0])
    out = act(sim, {0: win, 1: ask_action(cfg, 2, 0)})
    # the winner was not done before the step: it gets the term, and gives it
    assert rewards(out) == ([1100 - 0.25, -1 + 275, 0 + 274.75], [1100, -1, 0])
    out = act(sim, {0: win, 1: guess_action(cfg, outside(w, 1)[0], 0)})
    # the mean over the other learners still has two entries, the done agent's being 0
    assert rewards(out) == ([0, -13, -3.25], [0, -13, 0])


@pytest.mark.parametrize(
    ("agents", "alpha"), [(["learner", "learner"], 0.0), (["learner", "honest"], 0.5)]
)
def test_prosocial_zero_or_a_single_learner_changes_nothing(make_sim, agents, alpha):
    cfg = game(agents=agents, incentives={"prosocial": alpha})
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    out = act(sim, {0: ask_action(cfg, 1, 0), 1: guess_action(cfg, outside(w, 1)[0], 0)})
    other = -13 if agents[1] == "learner" else -19  # the honest agent's unnecessary reply
    assert rewards(out) == ([-1, other], [-1, other])


# --- helpful answer ----------------------------------------------------------------------------


def asked_and_told(make_sim, intention: int, cfg=None, about_goal: bool = True):
    """Agent 0 asks agent 1 about its goal (or about another attribute 1 knows), agent 1
    replies with ``intention``; returns the sim, the config, the world and 0's goal."""
    cfg = cfg or game(incentives={"reward_helpful_answer": HELPFUL})
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    goal = w["goal"][0][0]
    assert goal in w["direct"][1]  # with two agents, the goals are what the other knows
    about = goal if about_goal else next(a for a in w["direct"][1] if a != goal)
    act(sim, {0: ask_action(cfg, 1, about)})
    assert rewards(act(sim, say={(1, 0): intention})) == ([0, 0], [0, 0])
    return sim, cfg, w, goal


def test_truthful_answer_then_correct_guess_pays_the_answerer(make_sim):
    sim, cfg, w, goal = asked_and_told(make_sim, COMPLETE_TRUTH)
    assert rewards(act(sim, {0: right(cfg, w, goal)})) == ([1100, HELPFUL], [1100, HELPFUL])


def asked_then_guessed_as_answered(make_sim, **incentives):
    """Agent 0 asks 1 about its goal, then guesses it right in the step where 1's truthful answer
    arrives; the outputs of that step."""
    cfg = game(incentives=incentives)
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    goal = w["goal"][0][0]
    act(sim, {0: ask_action(cfg, 1, goal)})
    return act(sim, {0: right(cfg, w, goal)}, {(1, 0): COMPLETE_TRUTH})


def test_answer_delivered_in_the_step_of_the_guess_counts(make_sim):
    out = asked_then_guessed_as_answered(make_sim, reward_helpful_answer=HELPFUL)
    assert rewards(out) == ([1100, HELPFUL], [1100, HELPFUL])


@pytest.mark.parametrize(
    ("intention", "about_goal", "guess_right"),
    [
        pytest.param(SPECIFIC_LIE, True, True, id="lie"),
        pytest.param(GENERAL_LIE, True, True, id="unknown"),
        pytest.param(INCOMPLETE_TRUTH, True, True, id="known"),
        pytest.param(COMPLETE_TRUTH, False, True, id="other_attribute"),
        pytest.param(COMPLETE_TRUTH, True, False, id="incorrect_guess"),
    ],
)
def test_no_helpful_reward_without_a_true_value_and_a_correct_guess(
    make_sim, intention, about_goal, guess_right
):
    cfg = game(
        attrs={"count": 5, "direct": 2, "goal": 1, "values": 3},
        incentives={"reward_helpful_answer": HELPFUL},
    )
    sim, cfg, w, goal = asked_and_told(make_sim, intention, cfg, about_goal)
    guess = right(cfg, w, goal) if guess_right else wrong(cfg, w, goal)
    mine = 1100 if guess_right else -7
    assert rewards(act(sim, {0: guess})) == ([mine, 0], [mine, 0])


def test_a_scripted_honest_answerer_earns_it_too(make_sim):
    cfg = game(agents=["learner", "honest"], incentives={"reward_helpful_answer": HELPFUL})
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    goal = w["goal"][0][0]
    # the honest agent answers every slot: unasked in the first step, it pays 19
    assert rewards(act(sim, {0: ask_action(cfg, 1, goal)})) == ([-1, -19], [-1, -19])
    # its truthful reply arrives in the step of the guess, for free
    out = act(sim, {0: right(cfg, w, goal)})
    assert rewards(out) == ([1100, HELPFUL], [1100, HELPFUL])


def test_every_truthful_answerer_is_paid_but_not_one_done_before_the_step(make_sim):
    cfg = game(
        agents=["learner", "learner", "learner"],
        attrs={"count": 5, "direct": 2, "goal": 1, "values": 3},
        incentives={"reward_helpful_answer": HELPFUL},
    )
    sim = make_sim(cfg)
    for seed in range(200):  # a world in which both others know agent 0's goal
        sim.reset(seed)
        w = world(sim)
        goal = w["goal"][0][0]
        if goal in w["direct"][1] and goal in w["direct"][2]:
            break
    else:
        pytest.fail("no world found")
    act(sim, {0: ask_action(cfg, 1, goal)})
    act(sim, {0: ask_action(cfg, 2, goal)}, {(1, 0): COMPLETE_TRUTH})
    out = act(sim, {1: right(cfg, w, w["goal"][1][0])}, {(2, 0): COMPLETE_TRUTH})
    assert rewards(out)[0] == [0, 1100, 0]  # agent 1 wins and is done
    out = act(sim, {0: right(cfg, w, goal)})
    assert rewards(out) == ([1100, 0, HELPFUL], [1100, 0, HELPFUL])


def test_helpful_reward_comes_before_the_prosocial_term(make_sim):
    out = asked_then_guessed_as_answered(make_sim, reward_helpful_answer=HELPFUL, prosocial=0.5)
    assert rewards(out) == ([1100 + HELPFUL / 2, HELPFUL + 550], [1100, HELPFUL])


def test_both_mechanisms_default_to_zero_and_own_reward_equals_reward(make_sim):
    cfg = game()
    assert (cfg.incentives.prosocial, cfg.incentives.reward_helpful_answer) == (0, 0)
    sim = make_sim(cfg)
    sim.reset()
    w = world(sim)
    goal = w["goal"][0][0]
    act(sim, {0: ask_action(cfg, 1, goal)})
    out = act(sim, {0: right(cfg, w, goal), 1: ask_action(cfg, 0, 0)}, {(1, 0): COMPLETE_TRUTH})
    assert rewards(out) == ([1100, -1], [1100, -1])
