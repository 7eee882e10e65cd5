"""A sweep over one config value: ``casi sweep RUN... --key incentives.prosocial``.

Per trial and learning agent, the mean over its last ``last`` evaluations (SPEC's "end", not
the peak) of the win rate, the share of its replies that were truthful (incomplete or complete
truth), lies (specific or general) or silence (``ignore``), and the influence of the answers it received
(``[eval] influence``). The swept value is read from each trial's ``config.toml``. Printed as a
Markdown table (one row per trial and agent, then mean ± sd per value); ``--out`` adds a plot.
"""

from __future__ import annotations

import csv
import statistics
import tomllib
from pathlib import Path
from typing import Any, NamedTuple

from casi_orchestrator.metrics import INFLUENCE, WIN_RATE, answers_key
from casi_orchestrator.plot import read_trial
from casi_orchestrator.summary import mean_sd

TRUTHS = ("incomplete_truth", "complete_truth")
LIES = ("specific_lie", "general_lie")
MEASURES = ("win", "truthful", "lies", "silent", "influence")
REPLIES = ("ignore", *LIES, *TRUTHS)  # every question asked of the agent gets one of these
SHARES = (TRUTHS, LIES, ("ignore",))  # Point.truthful, .lies, .silent


class Point(NamedTuple):
    value: float
    run: str
    trial: str
    agent: str
    win: float
    truthful: float | None  # None: nobody asked the agent anything at the end
    lies: float | None
    silent: float | None
    influence: float | None


def config_value(config: Path, key: str) -> float:
    """The dotted ``key`` of a trial's config.toml, as a number."""
    table: Any = tomllib.loads(config.read_text())
    for part in key.split("."):
        if not isinstance(table, dict) or part not in table:
            raise ValueError(f"{config}: no key {key!r}")
        table = table[part]
    if isinstance(table, bool) or not isinstance(table, int | float):
        raise ValueError(f"{config}: {key} = {table!r} is not a number")
    return float(table)


def last_evaluations(csv_path: Path, agent: str, last: int) -> list[dict[str, str]]:
    """The agent's cells of the last ``last`` rows that hold one of its evaluations."""
    prefix = agent + "."
    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if (r.get(prefix + WIN_RATE) or "").strip()]
    return [
        {k[len(prefix) :]: v for k, v in r.items() if k.startswith(prefix)} for r in rows[-last:]
    ]


def _mean_of(rows: list[dict[str, str]], metric: str) -> float | None:
    cells = [float(r[metric]) for r in rows if (r.get(metric) or "").strip()]
    return statistics.fmean(cells) if cells else None


def trial_points(trial: Path, key: str, last: int) -> list[Point]:
    csv_path = trial / "iterations.csv"
    value = config_value(trial / "config.toml", key)
    points = []
    for agent in sorted(read_trial(csv_path, WIN_RATE)):
        rows = last_evaluations(csv_path, agent, last)
        replies = {k: _mean_of(rows, answers_key(k)) or 0.0 for k in REPLIES}
        total = sum(replies.values())
        truthful, lies, silent = (
            sum(replies[k] for k in ks) / total if total else None for ks in SHARES
        )
        win, influence = _mean_of(rows, WIN_RATE), _mean_of(rows, INFLUENCE)
        assert win is not None
        where = (trial.parent.name, trial.name, agent)
        points.append(Point(value, *where, win, truthful, lies, silent, influence))
    return points


def sweep_points(run_dirs: list[Path], key: str, last: int = 5) -> list[Point]:
    points = []
    for run in run_dirs:
        trials = sorted(run.glob("trial-*"))
        if not trials:
            raise ValueError(f"{run}: no trial-* folders")
        for trial in trials:
            points += trial_points(trial, key, last)
    return sorted(points, key=lambda p: (p.value, p.run, p.trial, p.agent))


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _mean(xs: list[float | None]) -> float:
    known = [x for x in xs if x is not None]
    return statistics.fmean(known) if known else float("nan")


def markdown(points: list[Point], key: str) -> str:
    """One row per trial and agent, then mean ± sd over them per value."""
    head = [key, "run", "trial", "agent", *MEASURES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        cells = [f"{p.value:g}", p.run, p.trial, p.agent, *(_f(getattr(p, m)) for m in MEASURES)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| " + " | ".join([key, "agents", *MEASURES]) + " |", "|" + "---|" * 7]
    for value in sorted({p.value for p in points}):
        group = [p for p in points if p.value == value]
        stats = [mean_sd([getattr(p, m) for p in group]) for m in MEASURES]
        lines.append(f"| {value:g} | {len(group)} | " + " | ".join(stats) + " |")
    return "\n".join(lines)


def plot(points: list[Point], key: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fields = (
        ("win", "win rate"),
        ("truthful", "truthful share of replies"),
        ("influence", "influence"),
    )
    fig, axes = plt.subplots(1, len(fields), figsize=(11, 3.4))
    values = sorted({p.value for p in points})
    for ax, (field, label) in zip(axes, fields, strict=True):
        for i, p in enumerate(points):
            y = getattr(p, field)
            if y is not None:
                ax.scatter(p.value + 0.015 * (i % 5 - 2), y, s=14, color="C0", alpha=0.6)
        means = [_mean([getattr(p, field) for p in points if p.value == v]) for v in values]
        ax.plot(values, means, color="C1", marker="_", markersize=14, label="mean")
        ax.set_xlabel(key)
        ax.set_title(label, fontsize=10)
        ax.set_ylim(-0.03, 1.03)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
