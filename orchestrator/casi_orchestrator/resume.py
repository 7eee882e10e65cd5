"""What a trial carries from one iteration to the next, and its checkpoints.

:class:`TrialState` is everything but the learners' models: counters, the last evaluation, and
per learning agent its bonus counts, backtracking stack and whether it stopped. A checkpoint
holds that state and every learner's parameters and optimizer state (as
:func:`casi_orchestrator.checkpoint.params_arrays` names them). Nothing here calls a learner.

Checkpoint arrays: ``net/<agent>/...`` (the learner's Params), ``bonus/<agent>/<key>`` (its
count table), ``bt/<agent>/...`` (its backtracking stack). ``meta``: the experiment, trial,
iteration, agent_steps, wall_time, the line counts of iterations.csv and events.jsonl, the
config's fingerprint and the config it hashes (``config``, to name the keys that changed when
a resume is refused; checkpoints written before it was kept fall back to the trial's
``config.toml``), the agents, which of them stopped, the last evaluation, and ``finished``
(the trial ended).

Reading refuses (:class:`ResumeError`, naming the file and key) a meta field of the wrong type
or missing (:class:`CheckpointMeta`), and any parameter a learner would refuse: every array
of a learner's state (``net/...`` and the backtracking snapshots ``bt/.../snap<i>/...``) must
be finite float32, every ``version`` an int64 [1] >= 0.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from casi_proto.api import Params
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from casi_orchestrator import sampling
from casi_orchestrator.backtrack import Backtracker
from casi_orchestrator.bonus import CountBonus
from casi_orchestrator.checkpoint import (
    ARRAYS,
    META,
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
_PARAM_ARRAY = re.compile(r"^(net/[^/]+/|bt/[^/]+/snap\d+/)(tensors|optimizer)/")
_VERSION_ARRAY = re.compile(r"^(net/[^/]+/|bt/[^/]+/snap\d+/)version$")


class ResumeError(Exception):
    """A checkpoint cannot be resumed from; the message names the file."""


class Continuation(BaseModel):
    """Where a longer run goes on from when the last iteration had an evaluation only because
    it was the last: the line counts before that evaluation and the iterations.csv row
    without it."""

    model_config = ConfigDict(strict=True, extra="forbid")

    csv_lines: int = Field(ge=0)
    jsonl_lines: int = Field(ge=0)
    row: dict[str, int | float | str | None]


class StageMeta(BaseModel):
    """The curriculum stage a trial is in, and the iteration it began with."""

    model_config = ConfigDict(strict=True, extra="forbid")

    stage: int = Field(ge=0)
    since: int = Field(ge=1)


class CheckpointMeta(BaseModel):
    """The ``meta`` of a trial's checkpoint (what :func:`snapshot` writes), type-checked."""

    model_config = ConfigDict(strict=True, extra="forbid")

    experiment: str
    trial: int = Field(ge=0)
    iteration: int = Field(ge=0)
    agent_steps: int = Field(ge=0)
    wall_time: float = Field(ge=0.0, allow_inf_nan=False)
    csv_lines: int = Field(ge=0)
    jsonl_lines: int = Field(ge=0)
    fingerprint: str
    agents: list[str]
    stopped: list[bool]
    last_eval: dict[str, dict[str, float | None]]
    finished: bool
    final_eval: dict[str, dict[str, float | None]] = {}
    continuation: Continuation | None = None
    config: dict[str, Any] | None = None  # absent in checkpoints written before it was kept
    curriculum: StageMeta | None = None  # only in a run with [curriculum]


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
    final_eval: dict[str, Metrics] = field(default_factory=dict)  # the extra last evaluation
    continuation: dict[str, Any] | None = None  # see Continuation
    finished: bool = False  # read from a checkpoint written when the trial had ended
    stage: int = 0  # the curriculum stage of the next iteration ([curriculum])
    stage_since: int = 1  # the iteration that stage began with

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
        "config": fingerprinted(cfg.resolved()),
        "agents": list(state.agents),
        "stopped": [a.stopped for a in state.agents.values()],
        "last_eval": state.last_eval,
        "final_eval": state.final_eval,
        "continuation": state.continuation,
    }
    if cfg.curriculum is not None:
        meta["curriculum"] = {"stage": state.stage, "since": state.stage_since}
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


def read_state(path: Path, cfg: RunConfig, fresh: TrialState, trial: int | None = None) -> Resumed:
    """Reads the checkpoint at ``path`` into ``fresh`` (from :func:`new_state`) and returns it.

    Refused with :class:`ResumeError`, naming the file: a damaged or foreign checkpoint, one
    written by a different config, or one of other agents.
    """
    try:
        arrays, raw = read_checkpoint(path)
    except CheckpointError as exc:
        raise ResumeError(str(exc)) from None
    meta = _check_meta(path, raw)
    _check_origin(path, meta, cfg, list(fresh.agents))
    if trial is not None and meta.trial != trial:
        raise ResumeError(f"{path / META}: holds trial {meta.trial}, this is trial {trial}")
    _check_params(path, arrays)
    params = {}
    for name, agent in fresh.agents.items():
        try:
            params[name] = read_params(arrays, f"net/{name}/")
        except KeyError:
            raise ResumeError(
                f"{path / ARRAYS}: has no learner state under 'net/{name}/'"
            ) from None
        try:
            agent.bonus.load(prefixed(arrays, f"bonus/{name}/"))
            agent.backtracker = _read_backtracker(arrays, name, cfg)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ResumeError(f"{path / ARRAYS}: {exc}") from None
    fresh.iteration = meta.iteration
    fresh.agent_steps = meta.agent_steps
    fresh.wall_offset = meta.wall_time
    fresh.last_eval = meta.last_eval
    for agent, stopped in zip(fresh.agents.values(), meta.stopped, strict=True):
        agent.stopped = stopped
    fresh.finished = meta.finished
    fresh.final_eval = meta.final_eval
    fresh.continuation = meta.continuation.model_dump() if meta.continuation else None
    _read_stage(path, meta, cfg, fresh)
    return Resumed(fresh, params, (meta.csv_lines, meta.jsonl_lines))


def _read_stage(path: Path, meta: CheckpointMeta, cfg: RunConfig, fresh: TrialState) -> None:
    """The curriculum stage of a checkpoint (a run without a curriculum has none)."""
    if cfg.curriculum is None:
        return
    if meta.curriculum is None or meta.curriculum.stage >= cfg.n_stages:
        raise ResumeError(
            f"{path / META}: meta.curriculum: expected the stage (0 to {cfg.n_stages - 1}) "
            f"of a run with [curriculum], got {meta.curriculum}"
        )
    fresh.stage, fresh.stage_since = meta.curriculum.stage, meta.curriculum.since


def continuation(lines: tuple[int, int], row: dict[str, Any]) -> dict[str, Any]:
    """The :class:`Continuation` of a last iteration whose output lines end at ``lines``."""
    plain = {k: v.item() if isinstance(v, np.generic) else v for k, v in row.items()}
    return {"csv_lines": lines[0], "jsonl_lines": lines[1], "row": plain}


def extend(
    state: TrialState, lines: tuple[int, int], cfg: RunConfig, columns: list[str]
) -> tuple[tuple[int, int], dict[str, Any] | None]:
    """The line counts a resumed trial cuts its files back to, and a row to append.

    A trial whose last iteration was evaluated only because it was the last, resumed to go on
    longer, drops that evaluation (its lines, its values in the row): the longer run then
    writes what a run that long from the start writes.
    """
    cont = state.continuation
    if cont is None or cfg.algorithm.iterations <= state.iteration:
        return lines, None
    unknown = sorted(set(cont["row"]) - set(columns))
    if unknown:
        raise ResumeError(f"checkpoint meta.continuation.row: no such columns {unknown[:5]}")
    state.continuation, state.final_eval, state.finished = None, {}, False
    return (cont["csv_lines"], cont["jsonl_lines"]), cont["row"]


def _check_meta(path: Path, raw: dict[str, Any]) -> CheckpointMeta:
    try:
        meta = CheckpointMeta.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        got = repr(err.get("input"))
        got = got if len(got) <= 60 else got[:57] + "..."
        raise ResumeError(
            f"{path / META}: meta.{key}: {err['msg']} (got {got}); "
            f"{len(exc.errors())} problem(s) in all"
        ) from None
    cont = meta.continuation
    if cont is not None and (
        cont.csv_lines > meta.csv_lines or cont.jsonl_lines > meta.jsonl_lines
    ):
        raise ResumeError(f"{path / META}: meta.continuation: lines beyond those of the checkpoint")
    if len(meta.stopped) != len(meta.agents):
        raise ResumeError(
            f"{path / META}: meta.stopped: {len(meta.stopped)} entries for "
            f"{len(meta.agents)} agents"
        )
    return meta


def _check_params(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """What SetParams would refuse, refused here with the checkpoint's file and key."""
    for key, a in arrays.items():
        if _PARAM_ARRAY.match(key):
            if a.dtype != np.float32:
                raise ResumeError(
                    f"{path / ARRAYS}: array {key!r}: expected float32 parameters, got {a.dtype}"
                )
            if not np.isfinite(a).all():
                where = [int(i) for i in np.argwhere(~np.isfinite(a))[0]]
                raise ResumeError(
                    f"{path / ARRAYS}: array {key!r}: expected finite parameters, got "
                    f"{a[tuple(where)]} at index {where}"
                )
        elif _VERSION_ARRAY.match(key) and not (
            a.dtype == np.int64 and a.shape == (1,) and a[0] >= 0
        ):
            raise ResumeError(
                f"{path / ARRAYS}: array {key!r}: expected int64 [1] >= 0, got {a.dtype} "
                f"{list(a.shape)}"
            )


def fingerprinted(resolved: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that :meth:`RunConfig.fingerprint` hashes (the same keys
    left out: a test checks that both agree)."""
    data = json.loads(json.dumps(resolved))
    data.get("algorithm", {}).pop("iterations", None)
    data.get("eval", {}).pop("target_win_rate", None)
    for key in ("log", "checkpoint", "learners", "name", "tune"):
        data.pop(key, None)
    for agent in data.get("agents", []):
        if isinstance(agent, dict):
            agent.pop("address", None)
    return data


def changed_keys(old: Any, new: Any, where: str = "") -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in sorted(set(old) | set(new), key=str):
            dotted = f"{where}.{key}" if where else str(key)
            lines += changed_keys(old.get(key, _ABSENT), new.get(key, _ABSENT), dotted)
        return lines
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            line
            for k, (a, b) in enumerate(zip(old, new, strict=True))
            for line in changed_keys(a, b, f"{where}[{k}]")
        ]
    if old == new and type(old) is type(new):
        return []
    return [f"{where}: {_shown(old)} -> {_shown(new)}"]


_ABSENT = object()
_SHOWN_CHANGES = 8


def _shown(value: Any) -> str:
    text = "(not set)" if value is _ABSENT else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _old_config(path: Path, meta: CheckpointMeta) -> dict[str, Any] | None:
    """The config the checkpoint was written with: its meta, else the trial's config.toml."""
    if meta.config is not None:
        return meta.config
    try:
        return fingerprinted(tomllib.loads((path.parent / "config.toml").read_text()))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _check_origin(path: Path, meta: CheckpointMeta, cfg: RunConfig, names: list[str]) -> None:
    if meta.fingerprint != cfg.fingerprint():
        old = _old_config(path, meta)
        try:
            changes = changed_keys(old, fingerprinted(cfg.resolved())) if old is not None else []
        except RecursionError:  # a forged, absurdly nested meta.config
            changes = []
        if len(changes) > _SHOWN_CHANGES:
            more = len(changes) - _SHOWN_CHANGES
            changes = [*changes[:_SHOWN_CHANGES], f"and {more} more"]
        what = (
            "the keys that changed: " + "; ".join(changes)
            if changes
            else f"fingerprint {meta.fingerprint}, this config {cfg.fingerprint()}; the keys "
            "that changed are unknown (an older checkpoint, without its config.toml)"
        )
        raise ResumeError(
            f"{path}: written by a different config ({what}); only algorithm.iterations, "
            "eval.target_win_rate, name, [log], [checkpoint] and [learners] may change between "
            "a run and its resume: undo the change, or start over with --force"
        )
    if meta.agents != names:
        raise ResumeError(f"{path}: holds agents {meta.agents}, expected {names}")


def _read_backtracker(
    arrays: dict[str, np.ndarray], name: str, cfg: RunConfig
) -> Backtracker | None:
    bt = cfg.backtracking
    if not bt.enabled:
        return None
    return Backtracker.from_state(
        arrays, f"bt/{name}/", bt.pop_limit, bt.restart_limit, bt.unimproved_limit
    )


def adopt(
    source: Path, dest: Path, cfg: RunConfig, trial: int, may_change: Iterable[str]
) -> list[str]:
    """Makes ``dest`` (trial ``trial``'s checkpoint) continue from ``source``'s learners under
    ``cfg``, for ``casi tune``; returns the changes ``key: old -> new`` from ``source``'s
    config to ``cfg``.

    The arrays (parameters, optimizer, bonus counts, backtracking) are ``source``'s, bit for
    bit, as are its last evaluation and stopped flags. ``dest`` keeps its own counters (its
    iteration must be ``source``'s), output line counts and wall time, and gets ``cfg``'s
    fingerprint: only the keys in ``may_change`` (dotted, the ``[tune] mutations``) may differ
    from ``source``'s config.
    """
    try:
        arrays, raw = read_checkpoint(source)
        _, own_raw = read_checkpoint(dest)
    except CheckpointError as exc:
        raise ResumeError(str(exc)) from None
    meta, own = _check_meta(source, raw), _check_meta(dest, own_raw)
    if meta.iteration != own.iteration:
        raise ResumeError(
            f"{source}: at iteration {meta.iteration}, {dest} at {own.iteration}: a member "
            "copies a checkpoint of its own iteration"
        )
    old = meta.config if meta.config is not None else _old_config(source, meta) or {}
    changes = changed_keys(old, fingerprinted(cfg.resolved()))
    allowed = set(may_change)
    refused = [c for c in changes if c.split(":", 1)[0] not in allowed]
    if refused:
        raise ResumeError(
            f"{source}: cannot continue it under this config: {'; '.join(refused[:4])} "
            f"(only the [tune] mutations may change: {', '.join(sorted(allowed))})"
        )
    new_meta = {
        **meta.model_dump(),
        "trial": trial,
        "agent_steps": own.agent_steps,
        "wall_time": own.wall_time,
        "csv_lines": own.csv_lines,
        "jsonl_lines": own.jsonl_lines,
        "fingerprint": cfg.fingerprint(),
        "config": fingerprinted(cfg.resolved()),
        "finished": False,
        "final_eval": {},
        "continuation": None,
    }
    write_checkpoint(dest, arrays, new_meta)
    return changes
