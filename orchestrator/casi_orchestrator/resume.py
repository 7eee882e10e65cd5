"""What a trial carries from one iteration to the next, and its checkpoints.

:class:`TrialState` is everything but the learners' models: counters, the last evaluation, and
per learning agent its bonus counts, backtracking stack and whether it stopped. A checkpoint
holds that state and every learner's parameters and optimizer state (as
:func:`casi_orchestrator.checkpoint.params_arrays` names them). Nothing here calls a learner.

Checkpoint arrays: ``net/<agent>/...`` (the learner's Params), ``bonus/<agent>/<key>`` (its
count table), ``bt/<agent>/...`` (its backtracking stack). ``meta``: the experiment, trial,
iteration, agent_steps, wall_time, the line counts of iterations.csv and events.jsonl, the
config's fingerprint, the agents, which of them stopped, the last evaluation, and
``finished`` (the trial ended).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from casi_proto.api import Params

from casi_orchestrator import sampling
from casi_orchestrator.backtrack import Backtracker
from casi_orchestrator.bonus import CountBonus
from casi_orchestrator.checkpoint import (
    CheckpointError,
    params_arrays,
    prefixed,
    read_checkpoint,
    read_params,
    write_checkpoint,
)
from casi_orchestrator.config import RunConfig
from casi_orchestrator.evaluation import Metrics

CHECKPOINT = "checkpoint"


class ResumeError(Exception):
    """A checkpoint cannot be resumed from; the message names the file."""


@dataclass
class AgentState:
    """What the orchestrator keeps for one learning agent beside its learner."""

    bonus: CountBonus
    backtracker: Backtracker | None = None
    stopped: bool = False


@dataclass
class TrialState:
    """A trial between two iterations (the learners' models aside)."""

    agents: dict[str, AgentState]
    iteration: int = 0
    agent_steps: int = 0
    wall_offset: float = 0.0  # seconds the trial ran before this process took it over
    last_eval: dict[str, Metrics] = field(default_factory=dict)
    finished: bool = False  # read from a checkpoint written when the trial had ended

    @property
    def all_stopped(self) -> bool:
        return all(a.stopped for a in self.agents.values())


class Resumed(NamedTuple):
    """A trial read back from its checkpoint."""

    state: TrialState
    params: dict[str, Params]
    lines: tuple[int, int]  # (iterations.csv, events.jsonl) lines the checkpoint covers


def new_state(cfg: RunConfig, trial: int) -> TrialState:
    """The state of a trial before its first iteration (empty count tables)."""
    b = cfg.bonus
    obs_dim = cfg.game().obs_dim
    agents = {}
    for index, (_, spec) in enumerate(cfg.learning_agents):
        seed = sampling.derive_seed(cfg.seed, trial, sampling.BONUS, index)
        bonus = CountBonus(
            b.kind, obs_dim, bits=b.bits, quant_bits=b.quant_bits, beta=b.beta, seed=seed
        )
        agents[spec.name] = AgentState(bonus)
    return TrialState(agents)


def start_backtracking(state: TrialState, cfg: RunConfig, initial: dict[str, Params]) -> None:
    """Gives every agent a backtracking stack holding its initial parameters (if enabled)."""
    bt = cfg.backtracking
    if bt.enabled:
        for name, agent in state.agents.items():
            agent.backtracker = Backtracker(
                bt.pop_limit, bt.restart_limit, bt.unimproved_limit, initial[name]
            )


def snapshot(
    cfg: RunConfig,
    trial: int,
    state: TrialState,
    params: dict[str, Params],
    lines: tuple[int, int],
    wall_time: float,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and meta of a checkpoint of ``state`` (``finished`` is added on writing)."""
    arrays: dict[str, np.ndarray] = {}
    for name, agent in state.agents.items():
        arrays.update(params_arrays(params[name], f"net/{name}/"))
        arrays.update({f"bonus/{name}/{k}": v for k, v in agent.bonus.state().items()})
        if agent.backtracker is not None:
            arrays.update(agent.backtracker.state(f"bt/{name}/"))
    meta = {
        "experiment": cfg.name,
        "trial": trial,
        "iteration": state.iteration,
        "agent_steps": state.agent_steps,
        "wall_time": wall_time,
        "csv_lines": lines[0],
        "jsonl_lines": lines[1],
        "fingerprint": cfg.fingerprint(),
        "agents": list(state.agents),
        "stopped": [a.stopped for a in state.agents.values()],
        "last_eval": state.last_eval,
    }
    return arrays, meta


class Checkpoints:
    """The trial's ``checkpoint/``: the latest snapshot, written when asked (atomically)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / CHECKPOINT
        self.pending: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None
        self.written = -1  # the iteration on disk, -1 for none written by this process

    def remember(self, content: tuple[dict[str, np.ndarray], dict[str, Any]]) -> None:
        self.pending = content

    @property
    def behind(self) -> bool:
        """True if the remembered snapshot is newer than the one on disk."""
        return self.pending is not None and self.pending[1]["iteration"] > self.written

    def write(self, finished: bool = False) -> None:
        if self.pending is None:
            return
        arrays, meta = self.pending
        write_checkpoint(self.path, arrays, {**meta, "finished": finished})
        self.written = int(meta["iteration"])


def read_state(path: Path, cfg: RunConfig, fresh: TrialState) -> Resumed:
    """Reads the checkpoint at ``path`` into ``fresh`` (from :func:`new_state`) and returns it.

    Refused with :class:`ResumeError`, naming the file: a damaged or foreign checkpoint, one
    written by a different config, or one of other agents.
    """
    try:
        arrays, meta = read_checkpoint(path)
    except CheckpointError as exc:
        raise ResumeError(str(exc)) from None
    _check_origin(path, meta, cfg, list(fresh.agents))
    params = {}
    for name, agent in fresh.agents.items():
        try:
            params[name] = read_params(arrays, f"net/{name}/")
        except KeyError:
            raise ResumeError(f"checkpoint has no learner state under 'net/{name}/'") from None
        try:
            agent.bonus.load(prefixed(arrays, f"bonus/{name}/"))
            agent.backtracker = _read_backtracker(arrays, name, cfg)
        except ValueError as exc:
            raise ResumeError(f"{path}: {exc}") from None
    fresh.iteration = int(meta["iteration"])
    fresh.agent_steps = int(meta["agent_steps"])
    fresh.wall_offset = float(meta["wall_time"])
    fresh.last_eval = meta.get("last_eval") or {}
    for agent, stopped in zip(fresh.agents.values(), meta.get("stopped", []), strict=False):
        agent.stopped = bool(stopped)
    fresh.finished = bool(meta.get("finished"))
    return Resumed(fresh, params, (int(meta["csv_lines"]), int(meta["jsonl_lines"])))


def _check_origin(path: Path, meta: dict[str, Any], cfg: RunConfig, names: list[str]) -> None:
    if meta.get("fingerprint") != cfg.fingerprint():
        raise ResumeError(
            f"{path}: written by a different config (fingerprint {meta.get('fingerprint')}, "
            f"this config {cfg.fingerprint()}); only algorithm.iterations, [log], "
            "[checkpoint] and [learners] may change between a run and its resume"
        )
    if meta.get("agents") != names:
        raise ResumeError(f"{path}: holds agents {meta.get('agents')}, expected {names}")


def _read_backtracker(
    arrays: dict[str, np.ndarray], name: str, cfg: RunConfig
) -> Backtracker | None:
    bt = cfg.backtracking
    if not bt.enabled:
        return None
    return Backtracker.from_state(
        arrays, f"bt/{name}/", bt.pop_limit, bt.restart_limit, bt.unimproved_limit
    )
