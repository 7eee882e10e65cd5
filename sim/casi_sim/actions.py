"""The game's constants, in one place, and the encoding of the main action (SPEC 2.3).

Every code below is the position of its name in a tuple of names, so each list is written
once: the reference, the kernel, ``BatchSim`` and the PettingZoo view all import them here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from casi_sim.config import GameConfig

# The kinds of agent slot (SPEC 2.6); a slot's code in the kernel is its kind's position.
Kind = Literal["learner", "random", "honest", "liar", "silent"]
KINDS: tuple[Kind, ...] = get_args(Kind)
LEARNER, RANDOM, HONEST, LIAR, SILENT = range(len(KINDS))
KIND_CODES = {kind: code for code, kind in enumerate(KINDS)}

# The main action: 0 is noop, then the guesses, then the questions (guess_action, ask_action).
NOOP = 0

# What a main action does: the first column of the kernel's decode table.
DO_NOOP, DO_GUESS, DO_ASK = range(3)

# The intentions towards each other slot: the second part of an agent's action.
INTENTION_NAMES = ("ignore", "specific_lie", "general_lie", "incomplete_truth", "complete_truth")
IGNORE, SPECIFIC_LIE, GENERAL_LIE, INCOMPLETE_TRUTH, COMPLETE_TRUTH = range(len(INTENTION_NAMES))
N_INTENTIONS = len(INTENTION_NAMES)

# The kinds of answer, in the order of their one-hot in the observation (block 2).
ANSWER_KINDS = ("none", "unknown", "known", "value")
ANSWER_NONE, ANSWER_UNKNOWN, ANSWER_KNOWN, ANSWER_VALUE = range(len(ANSWER_KINDS))

# The outcomes of a guess, in the order they are checked (the columns of info["guesses"]).
GUESS_OUTCOMES = ("excessive", "known", "non_goal", "solved", "correct", "incorrect")
(
    GUESS_EXCESSIVE,
    GUESS_KNOWN,
    GUESS_NON_GOAL,
    GUESS_SOLVED,
    GUESS_CORRECT,
    GUESS_INCORRECT,
) = range(len(GUESS_OUTCOMES))
N_GUESS_OUTCOMES = len(GUESS_OUTCOMES)

# The columns of an attribute's cell in block 1 of the observation, before its value one-hot
# (a cell of block 2 has the one-hot of the answer kind there): cells are CELL_FLAGS + m wide.
CELL_COLUMNS = ("direct", "goal", "solved", "guesses_used")
CELL_DIRECT, CELL_GOAL, CELL_SOLVED, CELL_GUESSES = range(len(CELL_COLUMNS))
CELL_FLAGS = len(CELL_COLUMNS)

# The order of the incentives in the kernel's incentive vector, and each one's position there.
INCENTIVE_KEYS = (
    "cost_ask_question",
    "cost_ask_self_question",
    "cost_excessive_guessing",
    "cost_incorrect_guess",
    "cost_known_guess",
    "cost_non_goal_guess",
    "cost_solved_guess",
    "cost_unnecessary_reply",
    "reward_correct",
    "reward_win",
    "reward_helpful_answer",
    "prosocial",
)
_AT = {key: index for index, key in enumerate(INCENTIVE_KEYS)}
COST_ASK = _AT["cost_ask_question"]
COST_ASK_SELF = _AT["cost_ask_self_question"]
COST_EXCESSIVE = _AT["cost_excessive_guessing"]
COST_INCORRECT = _AT["cost_incorrect_guess"]
COST_KNOWN = _AT["cost_known_guess"]
COST_NON_GOAL = _AT["cost_non_goal_guess"]
COST_SOLVED = _AT["cost_solved_guess"]
COST_UNNECESSARY = _AT["cost_unnecessary_reply"]
REWARD_CORRECT = _AT["reward_correct"]
REWARD_WIN = _AT["reward_win"]
REWARD_HELPFUL = _AT["reward_helpful_answer"]
PROSOCIAL = _AT["prosocial"]


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
