"""Action encoding (SPEC 2.3): the main action and the intention constants."""

from __future__ import annotations

from casi_sim.config import GameConfig

NOOP = 0

IGNORE = 0
SPECIFIC_LIE = 1
GENERAL_LIE = 2
INCOMPLETE_TRUTH = 3
COMPLETE_TRUTH = 4
INTENTION_NAMES = ("ignore", "specific_lie", "general_lie", "incomplete_truth", "complete_truth")

# Columns of info["guesses"], in the order the cases of a guess are checked.
GUESS_OUTCOMES = ("excessive", "known", "non_goal", "solved", "correct", "incorrect")


def guess_action(cfg: GameConfig, attr: int, value: int) -> int:
    """The main action guessing that ``attr`` has ``value``: ``1 + attr*m + value``."""
    c, m = cfg.attrs.count, cfg.attrs.values
    if not 0 <= attr < c:
        raise ValueError(f"attr must be in [0, {c}), got {attr}")
    if not 0 <= value < m:
        raise ValueError(f"value must be in [0, {m}), got {value}")
    return 1 + attr * m + value


def ask_action(cfg: GameConfig, agent: int, attr: int) -> int:
    """The main action asking ``agent`` about ``attr``: ``1 + C*m + agent*C + attr``."""
    c, m, na = cfg.attrs.count, cfg.attrs.values, cfg.n_agents
    if not 0 <= agent < na:
        raise ValueError(f"agent must be in [0, {na}), got {agent}")
    if not 0 <= attr < c:
        raise ValueError(f"attr must be in [0, {c}), got {attr}")
    return 1 + c * m + agent * c + attr


def describe(cfg: GameConfig, main: int) -> str:
    """A main action in words: ``noop``, ``guess a=v`` or ``ask j about a``."""
    c, m = cfg.attrs.count, cfg.attrs.values
    if main == NOOP:
        return "noop"
    if main <= c * m:
        attr, value = divmod(main - 1, m)
        return f"guess attr {attr} = {value}"
    agent, attr = divmod(main - 1 - c * m, c)
    return f"ask agent {agent} about attr {attr}"
