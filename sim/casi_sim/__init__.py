"""CASI's game: a batched numba simulator (BatchSim) and its readable reference rules."""

from casi_sim.actions import (
    COMPLETE_TRUTH,
    GENERAL_LIE,
    GUESS_OUTCOMES,
    IGNORE,
    INCOMPLETE_TRUTH,
    INTENTION_NAMES,
    KINDS,
    N_INTENTIONS,
    NOOP,
    SPECIFIC_LIE,
    ask_action,
    guess_action,
)
from casi_sim.batch import INFO_KEYS, BatchSim
from casi_sim.config import Attrs, GameConfig, Incentives

__all__ = [
    "COMPLETE_TRUTH",
    "GENERAL_LIE",
    "GUESS_OUTCOMES",
    "IGNORE",
    "INCOMPLETE_TRUTH",
    "INFO_KEYS",
    "INTENTION_NAMES",
    "KINDS",
    "NOOP",
    "N_INTENTIONS",
    "SPECIFIC_LIE",
    "Attrs",
    "BatchSim",
    "GameConfig",
    "Incentives",
    "ask_action",
    "guess_action",
]
