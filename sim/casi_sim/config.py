"""The game's configuration (SPEC 2.1 and 2.4), validated when it is loaded."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from casi_sim.actions import CELL_FLAGS, INCENTIVE_KEYS, KINDS, N_INTENTIONS, Kind

__all__ = ["INCENTIVE_KEYS", "KINDS", "Attrs", "GameConfig", "Incentives", "Kind"]


def _points(default: float) -> float:
    return Field(default=default, ge=0.0, allow_inf_nan=False)  # type: ignore[no-any-return]


class Attrs(BaseModel):
    """The attributes of the world."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    count: int = Field(ge=2)
    """Number of attributes C in the world."""
    direct: int = Field(ge=1)
    """Attributes each agent knows from direct experience, d."""
    goal: int = Field(ge=1)
    """Goal attributes each agent must solve to win, g."""
    values: int = Field(ge=2)
    """Possible values per attribute, m."""

    @field_validator("direct")
    @classmethod
    def _direct_fits(cls, direct: int, info: ValidationInfo) -> int:
        """Smaller than attrs.count."""
        count = info.data.get("count")
        if count is not None and direct >= count:
            raise ValueError(
                f"attrs.direct = {direct} must be smaller than attrs.count = {count}: "
                "an agent that knows every attribute has no goal to learn"
            )
        return direct

    @field_validator("goal")
    @classmethod
    def _goal_fits(cls, goal: int, info: ValidationInfo) -> int:
        """At most attrs.count - attrs.direct."""
        count, direct = info.data.get("count"), info.data.get("direct")
        if count is not None and direct is not None and goal > count - direct:
            raise ValueError(
                f"attrs.goal = {goal} must be at most attrs.count - attrs.direct = "
                f"{count - direct}: goals are attributes the agent does not know directly"
            )
        return goal


class Incentives(BaseModel):
    """Costs (subtracted) and rewards (added), in points, and the prosocial weight; the
    defaults are Experiment #1's (reward_helpful_answer and prosocial, 0, are not in it)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    cost_ask_question: float = _points(2.0)
    """Asking another agent a question."""
    cost_ask_self_question: float = _points(20.0)
    """Asking oneself (instead of cost_ask_question)."""
    cost_excessive_guessing: float = _points(20.0)
    """Guessing an attribute already guessed max_guesses_per_attr times."""
    cost_incorrect_guess: float = _points(20.0)
    """A wrong guess about a goal attribute."""
    cost_known_guess: float = _points(20.0)
    """Guessing an attribute of one's own direct set."""
    cost_non_goal_guess: float = _points(20.0)
    """Guessing an attribute outside one's goal set."""
    cost_solved_guess: float = _points(20.0)
    """Guessing an attribute already solved."""
    cost_unnecessary_reply: float = _points(20.0)
    """Answering (any intention but ignore) an agent that asked nothing."""
    max_guesses_per_attr: int = Field(default=1, ge=1)
    """Guesses allowed per attribute before guessing it is excessive."""
    reward_correct: float = _points(100.0)
    """A correct guess of a goal attribute."""
    reward_win: float = _points(200.0)
    """Solving the last goal attribute."""
    reward_helpful_answer: float = _points(0.0)
    """Earned by each agent whose latest answer was the true value a questioner now guesses."""
    prosocial: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    """Weight alpha: each learner also earns alpha * the mean step reward of the other learners."""


class GameConfig(BaseModel):
    """One CASI game: the keys of SPEC 2.1 and 2.4."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    agents: list[Kind] = Field(min_length=2, max_length=16)
    """The kind of every agent slot, in order: learner, random, honest, liar or silent."""
    max_steps: int = Field(ge=1)
    """Steps per episode, T."""
    attrs: Attrs
    """The attributes of the world."""
    init: Literal["fixed", "random"] = "random"
    """fixed: the same world every episode (from the simulator's seed); random: a fresh one."""
    end_on_first_win: bool = False
    """End the episode for everyone as soon as any agent wins."""
    incentives: Incentives = Field(default_factory=Incentives)
    """Costs and rewards."""

    @field_validator("attrs")
    @classmethod
    def _goals_learnable(cls, attrs: Attrs, info: ValidationInfo) -> Attrs:
        """attrs.goal at most (number of agents - 1) x attrs.direct."""
        agents = info.data.get("agents")
        if agents is None:
            return attrs
        limit = (len(agents) - 1) * attrs.direct
        if attrs.goal > limit:
            raise ValueError(
                f"attrs.goal = {attrs.goal} must be at most (number of agents - 1) * "
                f"attrs.direct = {limit}: goals are drawn from what the other agents know"
            )
        return attrs

    @property
    def n_agents(self) -> int:
        """Number of agents na."""
        return len(self.agents)

    @property
    def n_main_actions(self) -> int:
        """A = 1 + C*m + na*C: noop, the guesses, the questions."""
        c, m = self.attrs.count, self.attrs.values
        return 1 + c * m + self.n_agents * c

    @property
    def n_intentions(self) -> int:
        """Five intentions: ignore, specific lie, general lie, incomplete and complete truth."""
        return N_INTENTIONS

    @property
    def obs_dim(self) -> int:
        """C*(4+m) + na*C*(4+m) + 2*na*C + 2 (SPEC 2.5)."""
        c, m, na = self.attrs.count, self.attrs.values, self.n_agents
        w = CELL_FLAGS + m
        return c * w + na * c * w + 2 * na * c + 2
