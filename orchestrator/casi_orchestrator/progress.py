"""Progress for a stderr that is not a terminal (docker compose logs, nohup, SLURM): one plain
line per evaluation, in place of the progress bar::

    exp0_groundhog trial 0: iteration=10/60 agent_steps=6400 a0.win_rate=0.453 a0.return=-12.3 a0.questions=1.2 elapsed=0:00:07

Per learning agent its win rate, return and questions per episode (iterations.csv's column
names); ``elapsed`` is the trial's wall time, earlier sessions of a resumed trial included.
"""

from __future__ import annotations

from rich.console import Console

from casi_orchestrator.config import RunConfig
from casi_orchestrator.evaluation import Metrics
from casi_orchestrator.metrics import AGENT_STEPS, ITERATION, QUESTIONS, RETURN, WIN_RATE, column
from casi_orchestrator.trainer import Trainer, TrialResult

SHOWN = (WIN_RATE, RETURN, QUESTIONS)


def eval_line(
    title: str, it: int, total: int, agent_steps: int, metrics: dict[str, Metrics], elapsed: float
) -> str:
    """The line of one evaluation."""
    words = [f"{title}:", f"{ITERATION}={it}/{total}", f"{AGENT_STEPS}={agent_steps}"]
    for name, m in metrics.items():
        words += [f"{column(name, key)}={_number(m.get(key))}" for key in SHOWN]
    words.append(f"elapsed={_clock(elapsed)}")
    return " ".join(words)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}"


class EvalLines:
    """Prints :func:`eval_line` after every evaluation of a trial, if ``console`` is not a
    terminal (a terminal has the progress bar)."""

    def __init__(self, console: Console, cfg: RunConfig, trial: int, trainer: Trainer) -> None:
        self.console, self.trainer = console, trainer
        self.enabled = not console.is_terminal
        self.title = f"{cfg.name} trial {trial}"
        self.every, self.total = cfg.eval.every, cfg.algorithm.iterations

    def iteration(self, it: int, last_eval: dict[str, Metrics]) -> None:
        """After iteration ``it``: its line if it was evaluated (every ``eval.every``)."""
        if it % self.every == 0:
            self._print(it, last_eval)

    def end(self, result: TrialResult) -> None:
        """The line of the evaluation a last iteration gets only because it is the last."""
        last = result.iteration == self.total and self.total % self.every != 0
        if last and not result.interrupted and not result.already_done:
            self._print(result.iteration, result.last_eval)

    def _print(self, it: int, metrics: dict[str, Metrics]) -> None:
        if not self.enabled or not metrics:
            return
        t = self.trainer
        line = eval_line(self.title, it, self.total, t.state.agent_steps, metrics, t.wall_time())
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
