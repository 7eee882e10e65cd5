"""GameConfig: defaults, derived sizes, and refusals that name the key."""

from __future__ import annotations

from typing import Any

import pytest
from casi_sim import GameConfig
from pydantic import BaseModel, ValidationError

GOOD: dict[str, Any] = {
    "agents": ["learner", "honest"],
    "max_steps": 10,
    "attrs": {"count": 4, "direct": 2, "goal": 1, "values": 4},
}


def refused(**changes: Any) -> str:
    keys = {**GOOD, **changes}
    with pytest.raises(ValidationError) as caught:
        GameConfig(**keys)
    return str(caught.value)


def attrs(**changes: int) -> dict[str, int]:
    return {**GOOD["attrs"], **changes}


def test_defaults_and_derived_sizes():
    cfg = GameConfig(**GOOD)
    assert cfg.init == "random" and cfg.end_on_first_win is False
    inc = cfg.incentives
    assert (inc.cost_ask_question, inc.cost_ask_self_question, inc.max_guesses_per_attr) == (
        2,
        20,
        1,
    )
    assert (inc.reward_correct, inc.reward_win, inc.cost_unnecessary_reply) == (100, 200, 20)
    assert (inc.reward_helpful_answer, inc.prosocial) == (0, 0)  # not in the original study
    assert cfg.n_agents == 2
    assert cfg.n_main_actions == 1 + 4 * 4 + 2 * 4 == 25
    assert cfg.obs_dim == 4 * 8 + 2 * 4 * 8 + 2 * 2 * 4 + 2 == 114
    assert cfg.n_intentions == 5


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"attrs": attrs(values=1)}, "attrs.values", "greater than or equal to 2"),
        ({"attrs": attrs(direct=5)}, "attrs.direct", "must be smaller than attrs.count = 4"),
        ({"attrs": attrs(direct=4)}, "attrs.direct", "must be smaller than attrs.count"),
        ({"attrs": attrs(goal=3)}, "attrs.goal", "at most attrs.count - attrs.direct = 2"),
        ({"attrs": attrs(goal=0)}, "attrs.goal", "greater than or equal to 1"),
        ({"attrs": attrs(count=1)}, "attrs.count", "greater than or equal to 2"),
        (
            {"attrs": {"count": 9, "direct": 2, "goal": 3, "values": 2}},
            "attrs.goal",
            "(number of agents - 1) * attrs.direct = 2",
        ),
        ({"agents": ["learner"]}, "agents", "at least 2 items"),
        ({"agents": ["learner"] * 17}, "agents", "at most 16 items"),
        ({"agents": ["learner", "oracle"]}, "agents.1", "'learner', 'random', 'honest'"),
        ({"max_steps": 0}, "max_steps", "greater than or equal to 1"),
        ({"init": "sometimes"}, "init", "'fixed' or 'random'"),
        (
            {"incentives": {"max_guesses_per_attr": 0}},
            "incentives.max_guesses_per_attr",
            "greater than or equal to 1",
        ),
        ({"incentives": {"reward_win": -1}}, "incentives.reward_win", "greater than or equal"),
        ({"incentives": {"cost_ask_question": "two"}}, "incentives.cost_ask_question", "number"),
        ({"incentives": {"reward_wins": 1}}, "incentives.reward_wins", "Extra inputs"),
        ({"incentives": {"prosocial": -0.1}}, "incentives.prosocial", "greater than or equal"),
        ({"incentives": {"prosocial": float("inf")}}, "incentives.prosocial", "finite number"),
        ({"incentives": {"prosocial": float("nan")}}, "incentives.prosocial", "finite number"),
        (
            {"incentives": {"reward_helpful_answer": -5}},
            "incentives.reward_helpful_answer",
            "greater than or equal",
        ),
        (
            {"incentives": {"reward_helpful_answer": float("inf")}},
            "incentives.reward_helpful_answer",
            "finite number",
        ),
        ({"attrs": {**GOOD["attrs"], "colour": 1}}, "attrs.colour", "Extra inputs"),
        ({"seed": 3}, "seed", "Extra inputs"),
    ],
)
def test_refusals_name_the_key(changes, key, words):
    message = refused(**changes)
    assert key in message and words in message


def test_goals_possible_with_more_agents():
    # the same attrs are fine once a third agent can teach the goals
    cfg = GameConfig(
        agents=["learner", "honest", "honest"],
        max_steps=3,
        attrs={"count": 9, "direct": 2, "goal": 3, "values": 2},
    )
    assert cfg.attrs.goal == 3


def test_errors_carry_dotted_locations_inside_a_larger_config():
    class Experiment(BaseModel):
        game: GameConfig

    with pytest.raises(ValidationError) as caught:
        Experiment(game={**GOOD, "attrs": attrs(values=1), "max_steps": -2})
    locations = {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}
    assert locations == {"game.attrs.values", "game.max_steps"}


def test_the_incentive_vector_holds_every_cost_and_reward():
    from casi_sim.config import INCENTIVE_KEYS, Incentives

    points = [k for k, f in Incentives.model_fields.items() if f.annotation is float]
    assert sorted(INCENTIVE_KEYS) == sorted(points)
    assert len(set(INCENTIVE_KEYS)) == len(INCENTIVE_KEYS)
