"""Trials in parallel on Ray: ``casi run CONFIG --trials N --ray [auto|HOST:PORT]``.

Every trial is a :class:`TrialActor` that runs :func:`run_trial`: the trial's own learners (a
:class:`LearnerPool` of its own: local subprocesses of the actor, or learners placed by Ray,
as the config says) and its :class:`Trainer`, writing ``runs/<experiment>/trial-<k>/`` as a
sequential run does. Its numbers are those of the sequential run: every random stream derives
from ``(seed, trial, ...)`` and every trial starts from a fresh Init of its learners.

A trial actor asks Ray for ``learners.trial_cpus`` CPUs and runs on this machine's Ray node
(its files go to ``--out`` here; only the learners it places may run elsewhere). Its progress
lines reach this terminal through Ray's log forwarding. The first SIGINT/SIGTERM asks every
trial to finish its iteration and checkpoint; the second kills them (their learners stop with
them). Learner logs go to ``runs/<experiment>/ray-logs/trial-<k>/``.

A Ray Tune trainable can drive a trial the same way: call :func:`run_trial` in the trainable
with ``on_iteration`` reporting the metrics (and the trial's ``checkpoint/`` folder) to Tune.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from casi_proto.errors import UNAVAILABLE, NetError
from rich.console import Console

from casi_orchestrator import ray_learners
from casi_orchestrator.checkpoint import CheckpointError
from casi_orchestrator.config import RunConfig
from casi_orchestrator.evaluation import Metrics
from casi_orchestrator.learners import INPROCESS, RAY, LearnerPool, LearnerStartError
from casi_orchestrator.outputs import TrialOutput
from casi_orchestrator.progress import EvalLines
from casi_orchestrator.resume import ResumeError
from casi_orchestrator.runner import draw_curves
from casi_orchestrator.trainer import Trainer, TrialResult

LOGS = "ray-logs"
POLL = 0.5  # s between looks at the stop flag while the trials run
ERRORS: dict[str, type[Exception]] = {
    e.__name__: e for e in (LearnerStartError, ResumeError, CheckpointError)
}


def run_trial(
    cfg: RunConfig,
    trial: int,
    folder: Path,
    resume: bool,
    stop: Callable[[], bool],
    console: Console,
    on_iteration: Callable[[int, dict[str, Metrics]], None] | None = None,
) -> TrialResult:
    """Trial ``trial`` of ``cfg`` into ``folder/trial-<k>``, with learners of its own;
    ``on_iteration(it, last_eval)`` after every iteration."""
    trial_dir = folder / f"trial-{trial}"
    with LearnerPool(cfg.learners, folder / LOGS / f"trial-{trial}") as pool:
        for _, spec in cfg.learning_agents:
            pool.open(spec.name, spec.address)
        names = [spec.name for _, spec in cfg.learning_agents]
        trainer = Trainer(
            cfg, trial, pool, TrialOutput(trial_dir, names, cfg.log.iteration_csv), stop
        )
        lines = EvalLines(console, cfg, trial, trainer)

        def update(it: int, last_eval: dict[str, Metrics]) -> None:
            lines.iteration(it, last_eval)
            if on_iteration is not None:
                on_iteration(it, last_eval)

        try:
            result = trainer.run(resume, update)
            lines.end(result)
        finally:
            trainer.close()
    if not result.interrupted:
        draw_curves(folder, trial_dir / "curves.png", console)
    return result


class TrialActor:
    """Runs one trial in a Ray worker on this machine; :meth:`stop` may come meanwhile."""

    def __init__(self, cwd: str, env: dict[str, str]) -> None:
        os.chdir(cwd)  # relative paths of the config (TLS files) mean what they meant here
        os.environ.update(env)
        self._stop = threading.Event()

    def run(self, cfg: RunConfig, trial: int, folder: str, resume: bool) -> tuple[Any, ...]:
        """``("done", TrialResult)``, or the error the trial ended with, as plain values."""
        console = Console(stderr=True)
        try:
            return ("done", self.train(cfg, trial, Path(folder), resume, console))
        except NetError as exc:
            return ("NetError", exc.code, exc.message)
        except tuple(ERRORS.values()) as exc:
            return (type(exc).__name__, str(exc))

    def train(
        self, cfg: RunConfig, trial: int, folder: Path, resume: bool, console: Console
    ) -> TrialResult:
        """The trial itself (:func:`run_trial`; ``casi tune``'s members run their own)."""
        return run_trial(cfg, trial, folder, resume, self._stop.is_set, console)

    def stop(self) -> None:
        self._stop.set()


def run_trials(
    cfg: RunConfig,
    folder: Path,
    trials: int,
    resume: bool,
    stop: Callable[[], bool],
    address: str,
    console: Console,
) -> list[TrialResult]:
    """Trials 0 .. ``trials - 1`` of ``cfg`` at once on the Ray at ``address``; their results
    in trial order. A trial's error is raised once every trial has ended."""
    _check_own_learners(cfg, trials)
    ray_learners.connect(address)
    console.print(
        f"{cfg.name}: {trials} trial(s) on Ray, {cfg.learners.trial_cpus:g} CPU(s) each",
        markup=False, highlight=False,
    )  # fmt: skip
    return run_on_actors(TrialActor, [cfg] * trials, folder, resume, stop, console)


def run_on_actors(
    actor_type: type[TrialActor],
    cfgs: list[RunConfig],
    folder: Path,
    resume: bool,
    stop: Callable[[], bool],
    console: Console,
) -> list[TrialResult]:
    """Trial ``k`` of ``cfgs[k]`` for every ``k`` at once, each in an ``actor_type`` actor on
    this machine's Ray node (Ray joined already); their results in trial order. A trial's
    error is raised once every trial has ended; no actor outlives the call."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    actor_class: Any = ray.remote(actor_type).options(
        num_cpus=cfgs[0].learners.trial_cpus,
        max_concurrency=2,  # run, and stop while it runs
        scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
    )
    token = os.environ.get(cfgs[0].learners.token_env)
    env = {cfgs[0].learners.token_env: token} if token else {}
    actors: list[Any] = [actor_class.remote(os.getcwd(), env) for _ in cfgs]
    target = str(folder.resolve())
    refs = [
        a.run.remote(c, k, target, resume)
        for k, (a, c) in enumerate(zip(actors, cfgs, strict=True))
    ]
    try:
        outcomes = _wait(refs, actors, stop, console)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
    return [_result(k, outcome) for k, outcome in enumerate(outcomes)]


def _check_own_learners(cfg: RunConfig, trials: int) -> None:
    """Trials at once cannot share a learner given by address (each Inits it anew)."""
    shared = [
        f"{spec.name}={spec.address}"
        for _, spec in cfg.learning_agents
        if spec.address not in (None, INPROCESS, RAY)
    ]
    if shared and trials > 1:
        raise LearnerStartError(
            f"--ray with --trials {trials}: the trials would share the learner(s) given by "
            f"address ({', '.join(shared)}), each trial Init-ing them anew; leave the "
            'address out (local learners, or [learners] placement = "ray"), or run the '
            "trials one after the other (without --ray)"
        )


def _wait(
    refs: list[Any], actors: list[Any], stop: Callable[[], bool], console: Console
) -> list[tuple[Any, ...]]:
    """The trials' outcomes; asks every trial to stop once ``stop()`` is true.

    A trial's actor is killed as soon as the trial ends, so that its CPUs go to a trial that
    is still waiting for them (more trials than the Ray has room for run as room frees).
    """
    import ray

    pending, stopping, t0 = list(refs), False, time.monotonic()
    outcomes: dict[int, tuple[Any, ...]] = {}
    while pending:
        done, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL)
        for ref in done:
            k = refs.index(ref)
            outcomes[k] = _outcome(k, ref)
            ray.kill(actors[k], no_restart=True)
            console.print(
                f"trial {k}: ended after {time.monotonic() - t0:.0f} s",
                markup=False, highlight=False,
            )  # fmt: skip
        if stop() and not stopping:
            stopping = True
            for k, actor in enumerate(actors):
                if k not in outcomes:
                    actor.stop.remote()
    return [outcomes[k] for k in range(len(refs))]


def _outcome(trial: int, ref: Any) -> tuple[Any, ...]:
    import ray
    from ray.exceptions import RayActorError

    try:
        return tuple(ray.get(ref))
    except RayActorError as exc:
        text = str(exc).strip().splitlines()
        why = text[0] if text else type(exc).__name__
        return ("NetError", UNAVAILABLE, f"its Ray worker died ({why})")


def _result(trial: int, outcome: tuple[Any, ...]) -> TrialResult:
    kind, *rest = outcome
    if kind == "done":
        result: TrialResult = rest[0]
        return result
    if kind == "NetError":
        raise NetError(rest[0], f"trial {trial}: {rest[1]}")
    raise ERRORS[kind](f"trial {trial}: {rest[0]}")
