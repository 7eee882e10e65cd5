"""A results table over runs: ``casi summary RUN... [--target 0.9]``, printed as Markdown.

Per (run, learning agent), over the trials in ``<run>/trial-*/iterations.csv``: the final
evaluation win rate (mean ± standard deviation across trials), the best one, the agent-steps and
wall time at which the evaluation win rate first reached ``target`` (median over the trials that
reached it, and how many did), the final questions asked per episode and the final return.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path

from casi_orchestrator.metrics import ITERATION, QUESTIONS, RETURN, WALL_TIME, WIN_RATE
from casi_orchestrator.plot import read_trial

COLUMNS = (
    "run",
    "agent",
    "trials",
    "final win rate",
    "best win rate",
    "reached target",
    "agent-steps to target",
    "seconds to target",
    "questions / episode",
    "return",
)


@dataclass
class TrialSummary:
    final_win: float
    best_win: float
    steps_to_target: float | None
    seconds_to_target: float | None
    questions: float
    final_return: float


def _last(trial_csv: Path, metric: str, agent: str) -> float:
    series = read_trial(trial_csv, metric).get(agent)
    return float(series.values[-1]) if series is not None else float("nan")


def _wall_times(trial_csv: Path) -> dict[int, float]:
    with open(trial_csv, newline="") as f:
        return {int(r[ITERATION]): float(r[WALL_TIME]) for r in csv.DictReader(f)}


def summarize_trial(trial_csv: Path, agent: str, target: float) -> TrialSummary | None:
    wins = read_trial(trial_csv, WIN_RATE).get(agent)
    if wins is None:
        return None
    reached = [i for i, w in enumerate(wins.values) if w >= target]
    steps = seconds = None
    if reached:
        first = reached[0]
        steps = float(wins.agent_steps[first])
        seconds = _wall_times(trial_csv).get(int(wins.iteration[first]))
    return TrialSummary(
        final_win=float(wins.values[-1]),
        best_win=float(wins.values.max()),
        steps_to_target=steps,
        seconds_to_target=seconds,
        questions=_last(trial_csv, QUESTIONS, agent),
        final_return=_last(trial_csv, RETURN, agent),
    )


def _agents(trial_csvs: list[Path]) -> list[str]:
    names: list[str] = []
    for path in trial_csvs:
        names += [a for a in read_trial(path, WIN_RATE) if a not in names]
    return names


def mean_sd(values: list[float | None]) -> str:
    """The mean and the sample standard deviation of the values given ("–" for none; the
    value alone for one, whose spread is unknown)."""
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return f"{present[0]:.2f}" if present else "–"
    return f"{statistics.fmean(present):.2f} ± {statistics.stdev(present):.2f}"


def _median(values: list[float | None], fmt: str) -> str:
    present = [v for v in values if v is not None]
    return format(statistics.median(present), fmt) if present else "–"


def run_rows(run_dir: Path, target: float) -> list[list[str]]:
    """One row per learning agent of one run."""
    trial_csvs = sorted(run_dir.glob("trial-*/iterations.csv"))
    if not trial_csvs:
        raise ValueError(f"{run_dir}: no trial-*/iterations.csv (is this a run folder?)")
    rows = []
    for agent in _agents(trial_csvs):
        found = [summarize_trial(p, agent, target) for p in trial_csvs]
        trials = [t for t in found if t is not None]
        reached = [t.steps_to_target for t in trials]
        rows.append(
            [
                run_dir.name,
                agent,
                str(len(trials)),
                mean_sd([t.final_win for t in trials]),
                mean_sd([t.best_win for t in trials]),
                f"{sum(s is not None for s in reached)}/{len(trials)}",
                _median(reached, ",.0f"),
                _median([t.seconds_to_target for t in trials], ".0f"),
                mean_sd([t.questions for t in trials]),
                mean_sd([t.final_return for t in trials]),
            ]
        )
    return rows


def markdown_table(run_dirs: list[Path], target: float = 0.9) -> str:
    rows = [row for run in run_dirs for row in run_rows(run, target)]
    header = [c.replace("target", f"{target:g}") for c in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
