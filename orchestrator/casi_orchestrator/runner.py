"""One ``casi run``: learners up, every trial, plots, a summary; learners down."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import shutil
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
from casi_orchestrator.outputs import TrialOutput, TrialStatus, trial_status
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
    tb = ", tb/" if cfg.log.tensorboard else ""
    console.print(f"outputs in {folder}: trial-*/ (iterations.csv, events.jsonl{tb}, checkpoint/, "
                  "curves.png) and curves.png")  # fmt: skip
    if cfg.log.tensorboard:
        _plain(console, f"watch them with: tensorboard --logdir {folder}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def draw_curves(folder: Path, out: Path, console: Console) -> None:
    """The run's curves into ``out``; a failure is a yellow line, never a failed run."""
    try:
        from casi_orchestrator.plot import plot_runs

        plot_runs([folder], out)
    except Exception as exc:  # a failed plot must not fail a finished run
        console.print(f"could not draw {out}: {exc}", style="yellow", markup=False)


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


RUN_OPTIONS = ("iterations", "seed", "target-win-rate", "tls-ca", "tls-cert", "tls-key", "ray")


def command_words(args: argparse.Namespace) -> list[str]:
    """``casi run`` with the options of ``args`` that decide what it runs, without --resume
    and --force (the command to continue or replace a run)."""
    words = ["casi", "run", str(args.config), "--out", str(args.out), "--trials", str(args.trials)]
    for flag in args.learner:
        words += ["--learner", flag]
    for option in RUN_OPTIONS:
        value = getattr(args, option.replace("-", "_"), None)
        if value is not None:
            words += [f"--{option}", str(value)]
    return words


def _plain(console: Console, text: str, style: str | None = None) -> None:
    # no markup (messages hold shapes like [16, 10]) and no wrapping (paths stay whole)
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def _with(words: list[str] | None, *options: str) -> str:
    """The command that ran, with ``options`` added."""
    return shlex.join([*(words or ["casi", "run", "CONFIG"]), *options])


def _refusal(
    statuses: list[TrialStatus], resume: bool, force: bool, words: list[str] | None
) -> list[str]:
    """Why this run may not start (one line each); empty if it may."""
    held = [s for s in statuses if s.holds]
    if resume and not any(s.checkpoint for s in statuses):
        where = ", ".join(f"{s.folder}: {s.describe()}" for s in held)
        where = where or f"{statuses[0].folder.parent} holds no trial"
        return [
            f"casi: --resume: nothing to continue, no trial of this run has a checkpoint ({where})",
            f"start the run afresh with: {_with(words, *(['--force'] if held else []))}",
        ]
    if resume or force or not held:
        return []
    return [
        "casi: not writing over the trial folders this run would fill:",
        *(f"  {s.folder}: {s.describe()}" for s in held),
        f"continue them (a larger --iterations extends them): {_with(words, '--resume')}",
        f"or delete and replace them: {_with(words, '--force')}",
    ]


def _replace(statuses: list[TrialStatus], console: Console) -> None:
    """--force: deletes the trial folders this run writes, so that no stale file remains."""
    for s in statuses:
        if s.folder.is_symlink() or s.folder.is_file():
            s.folder.unlink()
        elif s.folder.exists():
            shutil.rmtree(s.folder)
        if s.holds:
            _plain(console, f"--force: deleted {s.folder} ({s.describe()})")


def _others(folder: Path, trials: int) -> list[str]:
    """Trial folders beyond ``trials`` (kept, and drawn in the run's curves.png)."""
    mine = {f"trial-{k}" for k in range(trials)}
    return sorted(p.name for p in folder.glob("trial-*") if p.name not in mine)


def _resume_line(cfg: RunConfig, trial: int, s: TrialStatus) -> str:
    total = cfg.algorithm.iterations
    if not s.checkpoint:
        if s.holds:
            return (
                f"trial {trial}: no checkpoint ({s.describe()}): starting it again at iteration 0"
            )
        return f"trial {trial}: not run before: starting at iteration 0"
    if s.iteration is None:
        return f"trial {trial}: continuing from its checkpoint"
    if s.finished and s.iteration >= total:
        return f"trial {trial}: finished at iteration {s.iteration}: nothing to do"
    if s.finished:
        done = f"trial {trial}: finished at iteration {s.iteration}"
        return f"{done}: continuing it up to iteration {total}"
    return f"trial {trial}: continuing from iteration {s.iteration} (of {total})"


def _prepare(
    folder: Path,
    statuses: list[TrialStatus],
    resume: bool,
    force: bool,
    words: list[str] | None,
    console: Console,
) -> int | None:
    """Refuses to write over trials, or deletes them for --force; an exit status if refused."""
    refused = _refusal(statuses, resume, force, words)
    for line in refused:
        _plain(console, line, "red")
    if refused:
        return EXIT_USAGE
    if force:
        try:
            _replace(statuses, console)
        except OSError as exc:
            _plain(console, f"casi: --force: cannot delete {exc.filename}: {exc.strerror}", "red")
            return EXIT_ERROR
    others = _others(folder, len(statuses)) if folder.is_dir() else []
    if others and not resume:
        kept = ", ".join(others)
        _plain(
            console,
            f"{folder}: keeping {kept} (beyond --trials {len(statuses)}; drawn in curves.png)",
        )
    return None


def run_experiment(
    cfg: RunConfig,
    runs_root: Path,
    trials: int,
    resume: bool,
    should_stop: Callable[[], bool] | None = None,
    console: Console | None = None,
    force: bool = False,
    words: list[str] | None = None,
    ray_address: str | None = None,
) -> int:
    """Runs ``trials`` trials of ``cfg`` under ``runs_root/<name>``; returns the exit status.

    An existing trial folder is refused unless ``resume`` (continue it from its checkpoint) or
    ``force`` (delete it first); ``resume`` is refused when no trial has a checkpoint. ``words``
    is the command that ran (:func:`command_words`), shown in the messages that say how to go
    on. With ``ray_address`` (``auto`` or ``HOST:PORT``) the trials run at once on Ray
    (:mod:`ray_trials`).
    """
    console = console or Console(stderr=True)
    stop = should_stop or (lambda: False)
    try:
        folder = run_folder(runs_root, cfg.name)
    except ConfigError as exc:
        _plain(console, f"casi: {exc}", "red")
        return EXIT_USAGE
    statuses = [trial_status(folder / f"trial-{k}") for k in range(trials)]
    refused = _prepare(folder, statuses, resume, force, words, console)
    if refused is not None:
        return refused
    names = [spec.name for _, spec in cfg.learning_agents]
    results: list[TrialResult] = []
    warm = threading.Thread(target=_warm_kernels, args=(cfg,), name="casi-warm-up", daemon=True)
    warm.start()
    try:
        if ray_address is not None:
            results = _on_ray(cfg, folder, statuses, resume, stop, ray_address, console)
        else:
            with LearnerPool(cfg.learners, folder) as pool:
                for _, spec in cfg.learning_agents:
                    console.print(f"learner {spec.name}: {spec.address or 'local subprocess'}")
                    learner = pool.open(spec.name, spec.address)
                    console.print(f"learner {spec.name}: ready at {learner.address}")
                warm.join()
                for trial in range(trials):
                    if resume:
                        _plain(console, _resume_line(cfg, trial, statuses[trial]))
                    result = _run_trial(cfg, trial, pool, folder, names, resume, stop, console)
                    results.append(result)
                    if result.interrupted:
                        break
    except (LearnerStartError, ResumeError, CheckpointError, NetError) as exc:
        _plain(console, f"casi: {exc}", "red")
        checkpointed = any(find_checkpoint(s.folder / "checkpoint") for s in statuses)
        if isinstance(exc, NetError | LearnerStartError) and checkpointed:
            _plain(console, f"continue with: {_with(words, '--resume')}")
        return EXIT_ERROR
    if results and not results[-1].interrupted:
        draw_curves(folder, folder / "curves.png", console)
    _summary(console, cfg, folder, results)
    signum = getattr(should_stop, "signum", None)
    if results and results[-1].interrupted and signum:
        _plain(console, f"interrupted (signal {signum}); continue with: {_with(words, '--resume')}")
        return EXIT_SIGNAL_BASE + int(signum)
    return EXIT_OK


def _on_ray(
    cfg: RunConfig,
    folder: Path,
    statuses: list[TrialStatus],
    resume: bool,
    stop: Callable[[], bool],
    address: str,
    console: Console,
) -> list[TrialResult]:
    from casi_orchestrator.ray_trials import run_trials

    for trial, status in enumerate(statuses):
        if resume:
            _plain(console, _resume_line(cfg, trial, status))
    return run_trials(cfg, folder, len(statuses), resume, stop, address, console)


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
        draw_curves(folder, trial_dir / "curves.png", console)
    return result
