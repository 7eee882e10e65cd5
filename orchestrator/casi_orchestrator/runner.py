"""One ``casi run``: learners up, every trial, plots, a summary; learners down."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from casi_proto.errors import NetError
from casi_sim import BatchSim
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from casi_orchestrator.bonus import CountBonus
from casi_orchestrator.checkpoint import CheckpointError, find_checkpoint
from casi_orchestrator.config import ConfigError, RunConfig, run_folder
from casi_orchestrator.exits import EXIT_ERROR, EXIT_OK, EXIT_SIGNAL_BASE, EXIT_USAGE
from casi_orchestrator.learners import LearnerPool, LearnerStartError
from casi_orchestrator.metrics import QUESTIONS, RETURN, WIN_RATE
from casi_orchestrator.outputs import TrialOutput
from casi_orchestrator.progress import EvalLines
from casi_orchestrator.trainer import ResumeError, Trainer, TrialResult


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("eval win {task.fields[win]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,  # EvalLines print instead
    )


def _win_text(last_eval: dict[str, dict[str, float | None]]) -> str:
    if not last_eval:
        return "-"
    return " ".join(f"{name}={m[WIN_RATE]:.2f}" for name, m in last_eval.items())


def _summary(console: Console, cfg: RunConfig, folder: Path, results: list[TrialResult]) -> None:
    table = Table(title=f"{cfg.name}: {folder}", title_justify="left")
    for col in ("trial", "iters", "agent-steps", "wall s", "agent", "win", "return", "asks"):
        table.add_column(col, justify="left" if col == "agent" else "right")
    table.add_column("end")
    for k, r in enumerate(results):
        end = "stopped early" if r.stopped_early else "interrupted" if r.interrupted else "done"
        steps = f"{r.agent_steps / 1e6:.2f}M" if r.agent_steps >= 1e6 else f"{r.agent_steps:,}"
        for name, m in (r.last_eval or {"-": {}}).items():
            table.add_row(
                str(k), str(r.iteration), steps, f"{r.wall_time:.0f}", name,
                _fmt(m.get(WIN_RATE)), _fmt(m.get(RETURN)), _fmt(m.get(QUESTIONS)), end,
            )  # fmt: skip
    console.print(table)
    console.print(f"outputs in {folder}: trial-*/ (iterations.csv, events.jsonl, checkpoint/, "
                  "curves.png) and curves.png")  # fmt: skip


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _plot(folder: Path, out: Path, console: Console) -> None:
    try:
        from casi_orchestrator.plot import plot_runs

        plot_runs([folder], out)
    except Exception as exc:  # a failed plot must not fail a finished run
        console.print(f"[yellow]could not draw {out}: {exc}[/yellow]")


def _warm_kernels(cfg: RunConfig) -> None:
    """Loads (or compiles) the simulator's and the bonus's numba kernels.

    Runs in a thread while the learners start (the orchestrator only waits for them then), so
    that the first iteration does not pay for it. A failure here shows again in the trial.
    """
    with contextlib.suppress(Exception):
        game, b = cfg.game(), cfg.bonus
        sim = BatchSim(game, batch=1, seed=0)
        obs = sim.reset()
        na = game.n_agents
        sim.step(np.zeros((1, na), np.int64), np.zeros((1, na, na), np.int64))
        CountBonus(b.kind, game.obs_dim, bits=b.bits, quant_bits=b.quant_bits)(obs[:, 0])


def run_experiment(
    cfg: RunConfig,
    runs_root: Path,
    trials: int,
    resume: bool,
    should_stop: Callable[[], bool] | None = None,
    console: Console | None = None,
) -> int:
    """Runs ``trials`` trials of ``cfg`` under ``runs_root/<name>``; returns the exit status."""
    console = console or Console(stderr=True)
    stop = should_stop or (lambda: False)
    try:
        folder = run_folder(runs_root, cfg.name)
    except ConfigError as exc:
        console.print(f"casi: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    names = [spec.name for _, spec in cfg.learning_agents]
    results: list[TrialResult] = []
    warm = threading.Thread(target=_warm_kernels, args=(cfg,), name="casi-warm-up", daemon=True)
    warm.start()
    try:
        with LearnerPool(cfg.learners, folder) as pool:
            for _, spec in cfg.learning_agents:
                console.print(f"learner {spec.name}: {spec.address or 'local subprocess'}")
                learner = pool.open(spec.name, spec.address)
                console.print(f"learner {spec.name}: ready at {learner.address}")
            warm.join()
            for trial in range(trials):
                result = _run_trial(cfg, trial, pool, folder, names, resume, stop, console)
                results.append(result)
                if result.interrupted:
                    break
    except (LearnerStartError, ResumeError, CheckpointError, NetError) as exc:
        # no markup (messages hold shapes like [16, 10]) and no wrapping (paths stay whole)
        console.print(f"casi: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
        return EXIT_ERROR
    if results and not results[-1].interrupted:
        _plot(folder, folder / "curves.png", console)
    _summary(console, cfg, folder, results)
    signum = getattr(should_stop, "signum", None)
    if results and results[-1].interrupted and signum:
        console.print(f"interrupted; resume with: casi run ... --resume (signal {signum})")
        return EXIT_SIGNAL_BASE + int(signum)
    return EXIT_OK


def _run_trial(
    cfg: RunConfig,
    trial: int,
    pool: LearnerPool,
    folder: Path,
    names: list[str],
    resume: bool,
    stop: Callable[[], bool],
    console: Console,
) -> TrialResult:
    trial_dir = folder / f"trial-{trial}"
    if resume and find_checkpoint(trial_dir / "checkpoint") is None and trial_dir.exists():
        console.print(f"{trial_dir}: no checkpoint yet, running this trial from the start")
    out = TrialOutput(trial_dir, names, cfg.log.iteration_csv)
    trainer = Trainer(cfg, trial, pool, out, stop)
    total = cfg.algorithm.iterations
    lines = EvalLines(console, cfg, trial, trainer)
    try:
        with _progress(console) as progress:
            task = progress.add_task(f"{cfg.name} trial {trial}", total=total, win="-")

            def update(it: int, last_eval: dict[str, dict[str, float | None]]) -> None:
                progress.update(task, completed=it, win=_win_text(last_eval))
                lines.iteration(it, last_eval)

            result = trainer.run(resume, update)
            progress.update(task, completed=result.iteration, win=_win_text(result.last_eval))
            lines.end(result)
    finally:
        trainer.close()
    if not result.interrupted:
        _plot(folder, trial_dir / "curves.png", console)
    return result
