"""casi_sim.narrate: one step of an episode in words, checked sentence by sentence."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
from casi_sim import BatchSim, narrate
from casi_sim.actions import (
    COMPLETE_TRUTH,
    GENERAL_LIE,
    INCOMPLETE_TRUTH,
    SPECIFIC_LIE,
    ask_action,
    guess_action,
)

from .conftest import game, outside, world


def say(sim, main=None, intentions=None):
    """One step through narrate.step; ``main[i]``, ``intentions[(i, q)]``, the rest noop and
    ignore. Returns episode 0's lines."""
    na = sim.cfg.n_agents
    m = np.zeros((sim.batch, na), np.int64)
    it = np.zeros((sim.batch, na, na), np.int64)
    for i, a in (main or {}).items():
        m[:, i] = a
    for (i, q), x in (intentions or {}).items():
        it[:, i, q] = x
    *_, turns = narrate.step(sim, m, it)
    return narrate.lines(sim.cfg, turns[0], ["alice", "bob"])


def two_learners(seed: int = 0):
    cfg = game()
    sim = BatchSim(cfg, batch=1, seed=seed)
    sim.reset()
    return cfg, sim, world(sim)


def test_ask_answer_guess_win():
    cfg, sim, w = two_learners()
    goal = w["goal"][0][0]  # bob knows it: two agents, goals come from the other's direct set
    value = int(w["values"][goal])
    assert say(sim, {0: ask_action(cfg, 1, goal)}) == [
        f"alice asks bob about attr {goal}",
        "bob waits",
        "rewards: alice -1, bob +0",
    ]
    assert say(sim, {0: guess_action(cfg, goal, value)}, {(1, 0): COMPLETE_TRUTH}) == [
        f'bob answers alice about attr {goal}: "it is {value}" (complete truth)',
        f"alice guesses attr {goal} = {value}: correct",
        "bob waits",
        "alice has solved all its goals and wins",
        "rewards: alice +1100, bob +0",
    ]
    # alice is done: only bob acts from now on
    assert say(sim) == ["bob waits", "rewards: bob +0"]


def test_lies_name_the_truth():
    cfg, sim, w = two_learners()
    goal = w["goal"][0][0]
    value = int(w["values"][goal])
    say(sim, {0: ask_action(cfg, 1, goal)})
    lines = say(sim, {0: ask_action(cfg, 1, goal)}, {(1, 0): SPECIFIC_LIE})
    told = next(line for line in lines if line.startswith("bob answers"))
    lie = int(told.split('"it is ')[1][0])
    assert lie != value
    assert (
        told == f'bob answers alice about attr {goal}: "it is {lie}" (specific lie; it is {value})'
    )
    lines = say(sim, {0: ask_action(cfg, 1, goal)}, {(1, 0): GENERAL_LIE})
    assert lines[0] == (
        f'bob answers alice about attr {goal}: "I don\'t know" (general lie; bob knows it)'
    )
    lines = say(sim, {}, {(1, 0): INCOMPLETE_TRUTH})
    assert lines[0] == f'bob answers alice about attr {goal}: "I know it" (incomplete truth)'


def test_a_question_about_what_the_answerer_does_not_know():
    cfg, sim, w = two_learners()
    unknown = outside(w, 1)[0]  # bob neither knows it nor has it as a goal
    known_to_bob = unknown in w["direct"][1]
    assert not known_to_bob
    say(sim, {0: ask_action(cfg, 1, unknown)})
    assert say(sim, {}, {(1, 0): GENERAL_LIE})[0] == (
        f'bob answers alice about attr {unknown}: "I know it" (general lie; bob does not know it)'
    )
    say(sim, {0: ask_action(cfg, 1, unknown)})
    assert say(sim, {}, {(1, 0): COMPLETE_TRUTH})[0] == (
        f'bob answers alice about attr {unknown}: "I don\'t know" (complete truth)'
    )


def test_ignored_and_unnecessary_replies():
    cfg, sim, w = two_learners()
    goal = w["goal"][0][0]
    say(sim, {0: ask_action(cfg, 1, goal)})
    lines = say(sim, {}, {(0, 1): SPECIFIC_LIE})
    assert lines == [
        f"bob ignores alice's question about attr {goal}",
        "alice replies to agents that asked it nothing: bob (specific lie)",
        "alice waits",
        "bob waits",
        "rewards: alice -19, bob +0",
    ]


def test_guess_outcomes():
    cfg, sim, w = two_learners()
    own = w["direct"][0][0]
    goal = w["goal"][0][0]
    other = outside(w, 0)[0]
    wrong = (int(w["values"][goal]) + 1) % cfg.attrs.values
    lines = say(sim, {0: guess_action(cfg, own, 0), 1: guess_action(cfg, w["direct"][1][0], 0)})
    assert lines[:2] == [
        f"alice guesses attr {own} = 0: it knows attr {own} already",
        f"bob guesses attr {w['direct'][1][0]} = 0: it knows attr {w['direct'][1][0]} already",
    ]
    assert say(sim, {0: guess_action(cfg, other, 1)})[0] == (
        f"alice guesses attr {other} = 1: attr {other} is not one of its goals"
    )
    assert say(sim, {0: guess_action(cfg, goal, wrong)})[0] == (
        f"alice guesses attr {goal} = {wrong}: wrong (it is {w['values'][goal]})"
    )
    assert say(sim, {0: guess_action(cfg, goal, wrong)})[0] == (
        f"alice guesses attr {goal} = {wrong}: no guesses left for attr {goal}"
    )
    assert say(sim, {0: ask_action(cfg, 0, goal)})[0] == (
        f"alice asks itself about attr {goal} (a question to oneself costs)"
    )


def test_a_done_answerer_leaves_the_question_unanswered():
    cfg, sim, w = two_learners()
    goal_b = w["goal"][1][0]
    say(sim, {1: guess_action(cfg, goal_b, int(w["values"][goal_b])), 0: ask_action(cfg, 1, 0)})
    assert say(sim)[0] == "alice's question to bob about attr 0 goes unanswered: bob is done"


def test_text_and_world_lines():
    cfg = game(agents=["learner", "honest"])
    sim = BatchSim(cfg, batch=1, seed=0)
    sim.reset()
    w = world(sim)
    names = ["alice", "bob"]
    d0, d1, g0, g1 = w["direct"][0][0], w["direct"][1][0], w["goal"][0][0], w["goal"][1][0]
    values = ", ".join(f"attr {a} = {v}" for a, v in enumerate(w["values"]))
    assert narrate.world_lines(cfg, sim.state(), 0, names) == [
        f"world: {values}",
        f"alice (learner) knows attr {d0}; must find attr {g0}",
        f"bob (honest) knows attr {d1}; must find attr {g1}",
    ]
    *_, turns = narrate.step(sim, np.zeros((1, 2), np.int64), np.zeros((1, 2, 2), np.int64))
    # the scripted honest agent's noop is not narrated; its complete truth to nobody costs
    assert narrate.text(cfg, turns[0], names) == (
        "step 1\n"
        "  bob replies to agents that asked it nothing: alice (complete truth)\n"
        "  alice waits\n"
        "  rewards: alice +0, bob -19"
    )
    assert json.loads(json.dumps(asdict(turns[0])))["step"] == 1


def test_random_agents_are_narrated_as_they_played():
    """The scripted random agent's actions in a Turn are those the kernel played: its asks
    are the questions of the next step, its guesses have outcomes, nothing else does."""
    cfg = game(agents=["learner", "random", "random"], max_steps=12)
    sim = BatchSim(cfg, batch=4, seed=5)
    plain = BatchSim(cfg, batch=4, seed=5)
    rng = np.random.default_rng(0)
    c, m = cfg.attrs.count, cfg.attrs.values
    for episode in range(3):
        sim.reset(episode)
        plain.reset(episode)
        previous = None
        for _ in range(cfg.max_steps):
            main = rng.integers(0, cfg.n_main_actions, (4, 3))
            its = rng.integers(0, 5, (4, 3, 3))
            obs, reward, done, info, turns = narrate.step(sim, main, its)
            obs2, reward2, done2, _ = plain.step(main, its)
            np.testing.assert_array_equal(obs, obs2)
            np.testing.assert_array_equal(reward, reward2)
            for b, turn in enumerate(turns):
                for i in range(3):
                    action = turn.main[i]
                    guessed = turn.acting[i] and 1 <= action <= c * m
                    assert (turn.guess[i] is not None) == guessed
                    if previous is not None and previous[b].acting[i]:
                        act = previous[b].main[i] - 1 - c * m
                        asked = act >= 0 and act // c != i
                        want = [act // c, act % c] if asked else None
                        assert turn.questions[i] == want
            previous = turns


def test_a_prosocial_reward_shows_the_own_one_too():
    cfg = game(incentives={"prosocial": 0.5})
    sim = BatchSim(cfg, batch=1, seed=0)
    sim.reset()
    w = world(sim)
    lines = say(sim, {0: ask_action(cfg, 1, w["goal"][0][0])})
    # alice: -1 + 0.5 * 0; bob: 0 + 0.5 * -1
    assert lines[-1] == "rewards: alice -1, bob -0.5 (own +0)"
