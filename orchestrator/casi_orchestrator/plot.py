"""Learning curves across trials and runs, from ``<run>/trial-*/iterations.csv``.

Each trial's series ``<agent>.<metric>`` (empty and non-finite cells skipped) is drawn as
its raw evaluation points, and smoothed with a bias-corrected EWMA (:func:`ewma`: a weighted
mean of the points so far, so the line starts at the first point and is not pulled towards
0 or towards it). The smoothed trials are aligned on ``iteration``: at each iteration the line
is the mean over the trials that have a value there and, when there are several trials, a
band spans their minimum to maximum; x is the mean ``agent_steps`` of those trials. Trials of
different lengths simply contribute where they have data.

Without a metric, the figure has four panels: win rate, return, questions and the answers
per episode by intention (one colour per intention).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
from casi_proto.names import INTENTION_NAMES
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.typing import LineStyleType

from casi_orchestrator.metrics import (
    AGENT_STEPS,
    ITERATION,
    QUESTIONS,
    RETURN,
    RUN_COLUMNS,
    WIN_RATE,
    answers_key,
)

ANSWERS = "answers"  # the default figure's panel of answers_<intention>, one line each
PANELS = (WIN_RATE, RETURN, QUESTIONS, ANSWERS)
STYLES: tuple[LineStyleType, ...] = ("-", "--", ":", "-.")


class MetricError(ValueError):
    """No values for the metric asked for; the message lists the metrics that have some."""


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


class Line(NamedTuple):
    """What one line of a panel draws: a run's agent's metric."""

    run_dir: Path
    agent: str
    metric: str
    label: str
    color: str | None
    style: LineStyleType
    show_last: bool  # the legend gives the last evaluation (mean over the trials)


def ewma(values: np.ndarray, alpha: float) -> np.ndarray:
    """Bias-corrected EWMA: ``m[t] = alpha * v[t] + (1 - alpha) * m[t-1]`` from ``m[-1] = 0``,
    divided by ``1 - (1 - alpha) ** (t + 1)`` (as Adam does); alpha in (0, 1]."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"ewma alpha must be in (0, 1], got {alpha}")
    values = np.asarray(values, np.float64)
    out = np.empty_like(values)
    acc, weight = 0.0, 0.0
    for t, v in enumerate(values):
        acc = alpha * v + (1.0 - alpha) * acc
        weight = alpha + (1.0 - alpha) * weight  # = 1 - (1 - alpha) ** (t + 1)
        out[t] = acc / weight
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


def _trial_files(run_dir: Path) -> list[Path]:
    files = sorted(Path(run_dir).glob("trial-*/iterations.csv"))
    if not files:
        raise ValueError(f"{run_dir}: no trial-*/iterations.csv to plot")
    return files


def run_series(run_dir: Path, metric: str) -> dict[str, list[Series]]:
    """The raw series of every agent of one run, one per trial that has values."""
    by_agent: dict[str, list[Series]] = {}
    for file in _trial_files(run_dir):
        for agent, s in read_trial(file, metric).items():
            by_agent.setdefault(agent, []).append(s)
    return by_agent


def run_curves(run_dir: Path, metric: str = WIN_RATE, alpha: float = 0.1) -> dict[str, Curve]:
    """The smoothed curve of every agent of one run (all its trials)."""
    return {
        agent: _align([Series(s.iteration, s.agent_steps, ewma(s.values, alpha)) for s in trials])
        for agent, trials in run_series(run_dir, metric).items()
    }


def metrics_with_values(run_dirs: list[Path]) -> list[str]:
    """The metrics (column suffixes) with at least one finite value in some trial, sorted."""
    found: set[str] = set()
    for run_dir in run_dirs:
        for file in _trial_files(run_dir):
            found |= _filled_metrics(file)
    return sorted(found)


def _filled_metrics(csv_path: Path) -> set[str]:
    found = set()
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            for column, cell in row.items():
                if column in RUN_COLUMNS or not column or "." not in column:
                    continue
                try:
                    if math.isfinite(float(cell or "nan")):
                        found.add(column.rsplit(".", 1)[1])
                except ValueError:
                    continue
    return found


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


def run_labels(run_dirs: list[Path]) -> list[str]:
    """Names that tell the runs apart: the folder name, with as many parent folders as it
    takes for two runs of one experiment (``a/runs/exp2``, ``b/runs/exp2``)."""
    parts = [Path(d).resolve().parts for d in run_dirs]
    longest = max(len(p) for p in parts)
    for depth in range(1, longest + 1):
        tails = [p[-depth:] for p in parts]
        if len(set(tails)) == len(tails):
            return ["/".join(_elided(tail, tails)) for tail in tails]
    return [f"{'/'.join(p[-1:])} ({k + 1})" for k, p in enumerate(parts)]


def _elided(tail: tuple[str, ...], tails: list[tuple[str, ...]]) -> list[str]:
    """``tail`` with the folders every run shares (but its own name) shown as ``…``."""
    shared = [all(t[i] == tail[i] for t in tails) for i in range(len(tail) - 1)]
    out = [part if not same else "…" for part, same in zip(tail, [*shared, False], strict=True)]
    return [p for k, p in enumerate(out) if p != "…" or k == 0 or out[k - 1] != "…"]


def _lines(
    run_dirs: list[Path], names: list[str], metric: str, agents: dict[Path, list[str]]
) -> Iterator[Line]:
    """The lines of a panel: one per (run, agent), or per (run, agent, intention)."""
    pairs = [(d, n, a) for d, n in zip(run_dirs, names, strict=True) for a in agents[d]]
    if metric != ANSWERS:
        for run_dir, name, agent in pairs:
            yield Line(run_dir, agent, metric, f"{name} {agent}", None, "-", True)
        return
    for k, (run_dir, name, agent) in enumerate(pairs):
        for i, intention in enumerate(INTENTION_NAMES):
            label = f"{name} {agent} {intention}"
            style = STYLES[k % len(STYLES)]
            yield Line(run_dir, agent, answers_key(intention), label, f"C{i}", style, False)


def _read(run_dirs: list[Path], metric: str) -> dict[str, dict[Path, dict[str, list[Series]]]]:
    """Raw series by metric, then run, then agent (for ANSWERS: every answers_<intention>)."""
    metrics = [answers_key(n) for n in INTENTION_NAMES] if metric == ANSWERS else [metric]
    return {m: {d: run_series(d, m) for d in run_dirs} for m in metrics}


def _draw(ax: Axes, line: Line, trials: list[Series], alpha: float) -> int:
    """Raw points, the smoothed mean and (several trials) the min-max band; trials drawn."""
    curve = _align([Series(s.iteration, s.agent_steps, ewma(s.values, alpha)) for s in trials])
    label = line.label
    if line.show_last:
        last = float(np.mean([s.values[-1] for s in trials]))
        label = f"{label} (last {last:.3g})"
    (drawn,) = ax.plot(
        curve.x, curve.mean, label=label, color=line.color, linestyle=line.style, zorder=3
    )
    color = drawn.get_color()
    for s in trials:
        ax.scatter(s.agent_steps, s.values, s=12, color=color, alpha=0.45, linewidths=0, zorder=2)
    if len(trials) > 1:
        ax.fill_between(curve.x, curve.low, curve.high, color=color, alpha=0.15, linewidth=0)
    return len(trials)


def _panel(
    ax: Axes, run_dirs: list[Path], names: list[str], metric: str, alpha: float
) -> tuple[int, list[float]]:
    """One metric's panel; the most trials of a line, and every value drawn."""
    data = _read(run_dirs, metric)
    agents = {d: sorted({a for m in data.values() for a in m[d]}) for d in run_dirs}
    most, values = 0, []
    for line in _lines(run_dirs, names, metric, agents):
        trials = data[line.metric][line.run_dir].get(line.agent)
        if trials:
            most = max(most, _draw(ax, line, trials, alpha))
            values += [float(v) for s in trials for v in s.values]
    ax.set_title("answers per episode by intention" if metric == ANSWERS else metric)
    ax.set_xlabel("agent steps")
    ax.grid(alpha=0.3)
    if values:
        _limits(ax, metric, values)
        handles = _answers_legend(run_dirs, names, agents) if metric == ANSWERS else None
        ax.legend(handles=handles, fontsize="small")
    else:
        ax.text(0.5, 0.5, f"no {metric} values", ha="center", va="center", transform=ax.transAxes)
    return most, values


def _answers_legend(
    run_dirs: list[Path], names: list[str], agents: dict[Path, list[str]]
) -> list[Line2D]:
    """A colour per intention, and a line style per (run, agent) when there are several."""
    handles = [Line2D([], [], color=f"C{i}", label=n) for i, n in enumerate(INTENTION_NAMES)]
    pairs = [f"{n} {a}" for d, n in zip(run_dirs, names, strict=True) for a in agents[d]]
    if len(pairs) > 1:
        handles += [
            Line2D([], [], color="gray", linestyle=STYLES[k % len(STYLES)], label=pair)
            for k, pair in enumerate(pairs)
        ]
    return handles


def _limits(ax: Axes, metric: str, values: list[float]) -> None:
    """Win rates on [0, 1]; a constant series centred in a readable range."""
    ax.ticklabel_format(axis="y", useOffset=False)
    if metric == WIN_RATE:
        ax.set_ylim(-0.03, 1.03)
        return
    low, high = min(values), max(values)
    center = (low + high) / 2
    if high - low <= 1e-9 * max(1.0, abs(center)):
        pad = max(0.1 * abs(center), 0.1)
        ax.set_ylim(center - pad, center + pad)


def _smoothing(alpha: float, trials: int) -> str:
    band = f"; mean and min-max band over {trials} trials" if trials > 1 else ""
    return f"dots: evaluations; line: EWMA {alpha} (bias-corrected){band}"


def _no_values(metric: str | None, run_dirs: list[Path]) -> MetricError:
    known = ", ".join(metrics_with_values(run_dirs)) or "none"
    wanted = f"'.{metric}'" if metric else f"any of {', '.join(PANELS[:-1])}, answers_*"
    return MetricError(
        f"plot: no column ending in {wanted} with values in "
        f"{', '.join(str(d) for d in run_dirs)}; metrics with values: {known}"
    )


def build_figure(
    run_dirs: list[Path],
    *,
    metric: str | None = None,
    alpha: float = 0.1,
    labels: list[str] | None = None,
) -> Figure:
    """One panel for ``metric``, or the four panels of :data:`PANELS` (``metric`` None);
    a line per (run, agent), labelled ``<label> <agent>``."""
    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError(f"plot: {len(labels)} labels for {len(run_dirs)} runs")
    names = labels if labels is not None else run_labels(run_dirs)
    panels = PANELS if metric is None else (metric,)
    fig = Figure(figsize=(8, 5) if metric else (12, 8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2).flatten() if metric is None else [fig.add_subplot()]
    most, drawn = 0, False
    for ax, name in zip(axes, panels, strict=True):
        trials, values = _panel(ax, run_dirs, names, name, alpha)
        most, drawn = max(most, trials), drawn or bool(values)
    if not drawn:
        raise _no_values(metric, run_dirs)
    if metric:
        axes[0].set_ylabel(metric)
        axes[0].set_title(f"{metric} ({_smoothing(alpha, most)})", fontsize="medium")
    else:
        fig.suptitle(_smoothing(alpha, most), fontsize="medium")
    fig.tight_layout()
    return fig


def plot_runs(
    run_dirs: list[Path],
    out: Path,
    *,
    metric: str | None = None,
    ewma: float = 0.1,
    labels: list[str] | None = None,
) -> Path:
    """Draw ``metric`` (or the four default panels) of every run into one PNG at ``out``
    (written atomically)."""
    fig = build_figure(run_dirs, metric=metric, alpha=ewma, labels=labels)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    fig.savefig(tmp, format="png")
    os.replace(tmp, out)
    return out
