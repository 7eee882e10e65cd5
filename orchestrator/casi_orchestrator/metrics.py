"""The names of what a trial measures: evaluation metrics, Train's losses, iterations.csv.

Every module that writes or reads these names (the evaluation, the log streams, the CSV, the
plots and the summary) takes them from here.
"""

from __future__ import annotations

from casi_proto.api import LOSS_FIELDS
from casi_proto.names import INTENTION_NAMES

RETURN = "return"
WIN_RATE = "win_rate"
STEPS_TO_WIN = "steps_to_win"
QUESTIONS = "questions"
INFLUENCE = "influence"


def answers_key(intention: str) -> str:
    """The metric of the replies given with ``intention`` per episode."""
    return f"answers_{intention}"


EVAL_METRICS = (
    RETURN,
    WIN_RATE,
    STEPS_TO_WIN,
    QUESTIONS,
    *(answers_key(n) for n in INTENTION_NAMES),
    INFLUENCE,
)
LOSS_METRICS = LOSS_FIELDS
BONUS = "bonus"
EVENT = "event"
TRAIN_COLUMNS = (*LOSS_METRICS, BONUS, EVENT)
ITERATION = "iteration"
AGENT_STEPS = "agent_steps"
WALL_TIME = "wall_time"
RUN_COLUMNS = (ITERATION, AGENT_STEPS, WALL_TIME)


def column(agent: str, metric: str) -> str:
    """The iterations.csv column of one agent's metric: ``<agent>.<metric>``."""
    return f"{agent}.{metric}"


def csv_columns(agents: list[str]) -> list[str]:
    """The columns of iterations.csv for the given learning agents."""
    cols = list(RUN_COLUMNS)
    for name in agents:
        cols += [column(name, c) for c in EVAL_METRICS + TRAIN_COLUMNS]
    return cols
