"""Learning curves across trials and runs, from ``<run>/trial-*/iterations.csv``.

Each trial's series ``<agent>.<metric>`` (empty and non-finite cells skipped)
is smoothed with an EWMA, then the trials are aligned on ``iteration``: at each
iteration the line is the mean over the trials that have a value there and the
band spans their minimum to maximum; x is the mean ``agent_steps`` of those
trials. Trials of different lengths simply contribute where they have data.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from casi_orchestrator.metrics import AGENT_STEPS, ITERATION, WIN_RATE


class Curve(NamedTuple):
    """One agent's curve in one run, aligned on iteration."""

    iteration: np.ndarray  # int64 [n]
    x: np.ndarray  # mean agent_steps
    mean: np.ndarray
    low: np.ndarray  # minimum across trials
    high: np.ndarray  # maximum across trials
    trials: np.ndarray  # how many trials contribute


class Series(NamedTuple):
    iteration: np.ndarray
    agent_steps: np.ndarray
    values: np.ndarray


def ewma(values: np.ndarray, alpha: float) -> np.ndarray:
    """``y[0] = v[0]``, ``y[t] = alpha * v[t] + (1 - alpha) * y[t-1]``; alpha in (0, 1]."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"ewma alpha must be in (0, 1], got {alpha}")
    values = np.asarray(values, np.float64)
    out = np.empty_like(values)
    acc = 0.0
    for t, v in enumerate(values):
        acc = v if t == 0 else alpha * v + (1.0 - alpha) * acc
        out[t] = acc
    return out


def read_trial(csv_path: Path, metric: str) -> dict[str, Series]:
    """Every ``<agent>.<metric>`` column of one iterations.csv, empty cells skipped."""
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        for required in (ITERATION, AGENT_STEPS):
            if required not in columns:
                raise ValueError(f"{csv_path}: no column {required!r} (columns: {columns})")
        suffix = "." + metric
        agents = [c[: -len(suffix)] for c in columns if c.endswith(suffix) and c != suffix]
        rows: dict[str, list[tuple[int, float, float]]] = {a: [] for a in agents}
        for line, row in enumerate(reader, start=2):
            for agent in agents:
                cell = (row.get(agent + suffix) or "").strip()
                if not cell:
                    continue
                try:
                    point = (int(row[ITERATION]), float(row[AGENT_STEPS]), float(cell))
                except (TypeError, ValueError) as e:
                    raise ValueError(f"{csv_path}, line {line}: {e}") from e
                if math.isfinite(point[2]):
                    rows[agent].append(point)
    return {
        a: Series(*(np.array(c) for c in zip(*pts, strict=True))) for a, pts in rows.items() if pts
    }


def run_curves(run_dir: Path, metric: str = WIN_RATE, alpha: float = 0.1) -> dict[str, Curve]:
    """The curve of every agent of one run (all its trials)."""
    files = sorted(Path(run_dir).glob("trial-*/iterations.csv"))
    if not files:
        raise ValueError(f"{run_dir}: no trial-*/iterations.csv to plot")
    by_agent: dict[str, list[Series]] = {}
    for file in files:
        for agent, s in read_trial(file, metric).items():
            smooth = Series(s.iteration, s.agent_steps, ewma(s.values, alpha))
            by_agent.setdefault(agent, []).append(smooth)
    return {agent: _align(trials) for agent, trials in by_agent.items()}


def _align(trials: list[Series]) -> Curve:
    iterations = np.unique(np.concatenate([t.iteration for t in trials]))
    values = np.full((len(trials), len(iterations)), np.nan)
    steps = np.full_like(values, np.nan)
    for k, t in enumerate(trials):
        cols = np.searchsorted(iterations, t.iteration)
        values[k, cols], steps[k, cols] = t.values, t.agent_steps
    return Curve(
        iteration=iterations.astype(np.int64),
        x=np.nanmean(steps, axis=0),
        mean=np.nanmean(values, axis=0),
        low=np.nanmin(values, axis=0),
        high=np.nanmax(values, axis=0),
        trials=(~np.isnan(values)).sum(axis=0),
    )


def build_figure(
    run_dirs: list[Path],
    *,
    metric: str = WIN_RATE,
    alpha: float = 0.1,
    labels: list[str] | None = None,
) -> Figure:
    """One axes, one line with a min-max band per (run, agent), labelled ``<label> <agent>``."""
    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError(f"plot: {len(labels)} labels for {len(run_dirs)} runs")
    names = labels if labels is not None else [Path(d).name for d in run_dirs]
    fig = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for run_dir, name in zip(run_dirs, names, strict=True):
        for agent, c in sorted(run_curves(run_dir, metric, alpha).items()):
            (line,) = ax.plot(c.x, c.mean, label=f"{name} {agent}")
            ax.fill_between(c.x, c.low, c.high, color=line.get_color(), alpha=0.2, linewidth=0)
    if not ax.lines:
        raise ValueError(f"plot: no column ending in '.{metric}' with values in {run_dirs}")
    ax.set_xlabel("agent steps")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} (EWMA {alpha}, mean and min-max over trials)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_runs(
    run_dirs: list[Path],
    out: Path,
    *,
    metric: str = WIN_RATE,
    ewma: float = 0.1,
    labels: list[str] | None = None,
) -> Path:
    """Draw ``metric`` of every run into one PNG at ``out`` (written atomically)."""
    fig = build_figure(run_dirs, metric=metric, alpha=ewma, labels=labels)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    fig.savefig(tmp, format="png")
    os.replace(tmp, out)
    return out
