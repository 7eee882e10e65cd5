"""Population-based training: ``casi tune CONFIG`` with a ``[tune]`` section.

A population of ``tune.population`` members trains the config at once, member ``k`` as trial
``k`` of ``casi run`` would (its own random streams, its folder ``runs/<name>/trial-<k>/``).
Every ``tune.interval`` iterations each member writes its checkpoint, and the scheduler
decides who goes on from whose checkpoint, with which mutated ``[tune] mutations`` keys:

- ``pbt``: Ray Tune's :class:`PopulationBasedTraining` (synchronous) drives the members as
  function trainables. Each report carries the member's CASI checkpoint folder
  (``tune.Checkpoint.from_directory``); a member in the bottom quantile is restarted with a
  top member's checkpoint (exploit) and a perturbed config (explore, :func:`mutate`).
- ``tournament``: this module's own loop over Ray actors, as AgileRL evolves a population:
  all members stop at the interval, the best goes on unchanged (elitism), every other place
  goes to the best of ``tournament_size`` members drawn at random, and each of those has one
  key mutated with ``mutation_probability``.

Either way a member continues from a checkpoint by :func:`resume.adopt`: the arrays
(parameters, optimizer state, bonus counts, backtracking) are the source's, bit for bit, and
only the mutated keys may differ from the source's config. A member that copies another also
hashes with the source's bonus projection (the counts are of its codes).

Outputs beside the members: ``lineage.csv`` (who continued from whom at which iteration,
with which mutations) and ``lineage.png`` (:mod:`lineage`), ``best_config.toml`` (the
config of the member with the best last score, ready for ``casi run``), and ``tune/`` (Ray
Tune's own state for ``pbt``; ``tournament.json`` for ``tournament``). ``--resume`` goes on
from there.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from casi_orchestrator import lineage, ray_learners
from casi_orchestrator.bonus import CountBonus
from casi_orchestrator.checkpoint import CheckpointError, find_checkpoint, read_checkpoint
from casi_orchestrator.config import MutationCfg, RunConfig, TuneCfg, validate_config
from casi_orchestrator.learners import LearnerPool
from casi_orchestrator.outputs import TrialOutput
from casi_orchestrator.progress import EvalLines
from casi_orchestrator.ray_trials import LOGS, TrialActor, run_on_actors
from casi_orchestrator.resume import ResumeError, adopt
from casi_orchestrator.trainer import Trainer, TrialResult

TUNE_DIR = "tune"
STATE = "tournament.json"
BEST = "best_config.toml"
SCORE = "score"
POLL = 0.5  # s between looks at the stop flag


def member_dir(folder: Path, k: int) -> Path:
    return folder / f"trial-{k}"


# ---------------------------------------------------------------- configs and mutations


def initial_values(cfg: RunConfig) -> dict[str, Any]:
    """The mutated keys' values in the base config (every member starts from them)."""
    tune = _tune(cfg)
    data = cfg.resolved()
    return {key: data[key.split(".")[0]][key.split(".")[1]] for key in tune.mutations}


def member_config(base: RunConfig, values: dict[str, Any], until: int | None = None) -> RunConfig:
    """``base`` with the mutated keys set to ``values``, checkpointing every interval (and
    ending at iteration ``until``, if given)."""
    data = base.resolved()
    for key, value in values.items():
        section, name = key.split(".")
        data[section][name] = value
    data["checkpoint"]["every"] = _tune(base).interval
    if until is not None:
        data["algorithm"]["iterations"] = until
    return validate_config(data, base.name)


def _tune(cfg: RunConfig) -> TuneCfg:
    if cfg.tune is None:
        raise ValueError(f"{cfg.name}: the config has no [tune] section")
    return cfg.tune


def perturb(value: Any, m: MutationCfg, rng: random.Random, resample: float) -> Any:
    """One mutation of ``value`` as ``m`` says (an integer stays an integer)."""
    if m.choices is not None:
        choices = m.choices
        if value not in choices or rng.random() < resample:
            new: float = rng.choice(choices)
        else:
            i = choices.index(value) + rng.choice((-1, 1))
            new = choices[min(max(i, 0), len(choices) - 1)]
    elif m.range is not None and (m.factors is None or rng.random() < resample):
        low, high = m.range
        if m.log:
            new = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            new = rng.uniform(low, high)
    else:
        assert m.factors is not None
        new = value * rng.choice(m.factors)
        if m.range is not None:
            new = min(max(new, m.range[0]), m.range[1])
    if isinstance(value, int) and not isinstance(value, bool):
        return max(1, round(new))
    return float(f"{new:.6g}")


def mutate(
    values: dict[str, Any], tune: TuneCfg, rng: random.Random, keys: list[str] | None = None
) -> dict[str, Any]:
    """``values`` with ``keys`` (default: every mutated key) perturbed."""
    out = dict(values)
    for key in keys if keys is not None else list(tune.mutations):
        out[key] = perturb(out[key], tune.mutations[key], rng, tune.resample_probability)
    return out


def score(metrics: dict[str, dict[str, float | None]], metric: str) -> float:
    """The mean of ``metric`` over the learning agents (nan before an evaluation)."""
    values = [m.get(metric) for m in metrics.values()]
    if not values or any(v is None for v in values):
        return math.nan
    return float(sum(v for v in values if v is not None) / len(values))


# ---------------------------------------------------------------- one member


def run_member(
    cfg: RunConfig,
    k: int,
    folder: Path,
    resume: bool,
    stop: Callable[[], bool],
    console: Console,
    on_checkpoint: Callable[[int, Path], None] | None = None,
) -> TrialResult:
    """Member ``k`` into ``folder/trial-<k>`` with learners of its own (as
    :func:`ray_trials.run_trial`, and with ``on_checkpoint``)."""
    out_dir = member_dir(folder, k)
    with LearnerPool(cfg.learners, folder / LOGS / f"trial-{k}") as pool:
        for _, spec in cfg.learning_agents:
            pool.open(spec.name, spec.address)
        names = [spec.name for _, spec in cfg.learning_agents]
        trainer = Trainer(cfg, k, pool, TrialOutput(out_dir, names, cfg.log.iteration_csv), stop)
        if resume:
            _hash_like_checkpoint(trainer, cfg)
        lines = EvalLines(console, cfg, k, trainer)
        try:
            result = trainer.run(resume, lines.iteration, on_checkpoint)
            lines.end(result)
        finally:
            trainer.close()
    return result


def _hash_like_checkpoint(trainer: Trainer, cfg: RunConfig) -> None:
    """Gives each agent the bonus projection its checkpoint's counts were made with (a
    member that continues another's checkpoint hashes as that member did)."""
    path = find_checkpoint(trainer.checkpoints.path)
    if path is None:
        return
    try:
        arrays, _ = read_checkpoint(path)
    except CheckpointError as exc:
        raise ResumeError(str(exc)) from None
    b, obs_dim = cfg.bonus, cfg.game().obs_dim
    for name, agent in trainer.state.agents.items():
        saved = arrays.get(f"bonus/{name}/config")
        if saved is not None and saved.shape == (5,) and int(saved[4]) != agent.bonus.seed:
            agent.bonus = CountBonus(
                b.kind, obs_dim, bits=b.bits, quant_bits=b.quant_bits, beta=b.beta,
                seed=int(saved[4]),
            )  # fmt: skip


def _last_score(path: Path, metric: str) -> float:
    _, meta = read_checkpoint(path)
    return score(meta.get("last_eval") or {}, metric)


def _copy(source: Path, cfg: RunConfig, k: int, folder: Path, values: dict[str, Any]) -> list[str]:
    """Member ``k`` continues from ``source`` under ``cfg``; its config.toml follows."""
    dest = member_dir(folder, k)
    changes = adopt(source, dest / "checkpoint", cfg, k, list(_tune(cfg).mutations))
    names = [spec.name for _, spec in cfg.learning_agents]
    TrialOutput(dest, names).write_config(cfg.resolved())
    return changes


# ---------------------------------------------------------------- Ray Tune's PBT


@dataclass
class Setup:
    """What every PBT member needs, as plain values (sent to the Ray workers)."""

    data: dict[str, Any]
    folder: str
    cwd: str
    env: dict[str, str] = field(default_factory=dict)
    synced: int = 0  # the iteration of the population's last perturbation (see _last_sync)

    def base(self) -> RunConfig:
        return validate_config(self.data, str(self.data["name"]))


def _member_index(config: dict[str, Any]) -> int:
    """The member a Tune trial is: its trial id ends in its 5-digit index (the order of
    ``grid_search`` over the members); ``config["member"]`` is copied on exploit."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id() or ""
    return int(trial_id[-5:]) if trial_id[-5:].isdigit() else int(config["member"])


def pbt_member(config: dict[str, Any], setup: Setup) -> None:
    """A Ray Tune function trainable: one member, reporting at every checkpoint."""
    from ray import tune

    os.chdir(setup.cwd)
    os.environ.update(setup.env)
    base = setup.base()
    metric = _tune(base).metric
    k = _member_index(config)
    values = {key: config[key] for key in _tune(base).mutations}
    cfg = member_config(base, values)
    folder = Path(setup.folder)
    own = member_dir(folder, k) / "checkpoint"

    def report(it: int, path: Path) -> None:
        _, meta = read_checkpoint(path)
        value = score(meta["last_eval"], metric)
        result = {"iteration": it, SCORE: value, "agent_steps": meta["agent_steps"]}
        target = cfg.eval.target_win_rate
        result["reached"] = target is not None and score(meta["last_eval"], "win_rate") >= target
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(str(path)))

    given = tune.get_checkpoint()
    if given is not None:
        with given.as_directory() as d:
            _take(Path(d), own, cfg, k, folder, values, metric)
    elif find_checkpoint(own) is None:
        if not lineage.started(folder, k):
            lineage.append(folder, k, {"iteration": 0, "event": "start", "source": k}, values)
    elif _waits(setup, cfg, own.parent):
        report(_iteration(own.parent), own)
    resume = find_checkpoint(own) is not None
    run_member(cfg, k, folder, resume, lambda: False, Console(stderr=True), report)


def _waits(setup: Setup, cfg: RunConfig, trial_dir: Path) -> bool:
    """True if the member (in a new Tune run, on ``--resume``) is at the next sync: it waited
    there for the others when the run stopped, and waits again (it reports there at once)."""
    it = _iteration(trial_dir)
    return setup.synced + _tune(cfg).interval <= it < cfg.algorithm.iterations


def _take(
    given: Path, own: Path, cfg: RunConfig, k: int, folder: Path, values: dict[str, Any],
    metric: str,
) -> None:  # fmt: skip
    """Member ``k`` restarted by Tune with checkpoint ``given``: its own (a pause, nothing to
    do), or another member's (an exploit: copied into its own, and a lineage row)."""
    _, meta = read_checkpoint(given)
    source, it = int(meta["trial"]), int(meta["iteration"])
    if not _to_copy(folder, k, source, it):
        return
    before = _last_score(own, metric)
    changes = _copy(given, cfg, k, folder, values)
    row = {"iteration": it, "event": "copy", "source": source, "score": before,
           "source_score": score(meta["last_eval"], metric), "mutations": changes}  # fmt: skip
    lineage.append(folder, k, row, values)
    from ray import tune

    # Tune keeps what the member continues from (a report within the interval changes nothing)
    _, now = read_checkpoint(own)
    result = {"iteration": it, SCORE: score(now["last_eval"], metric), "copied_from": source}
    tune.report(result, checkpoint=tune.Checkpoint.from_directory(str(own)))


def _to_copy(folder: Path, k: int, source: int, it: int) -> bool:
    """True if member ``k``, given ``source``'s checkpoint of iteration ``it``, is to copy it:
    not its own (a pause), and not a copy it recorded before an interruption. Where its own
    checkpoint is does not matter: a member that trained past ``it`` before Tune paused it
    goes back to ``it`` with the source's state, as the exploit says."""
    return source != k and not lineage.has(folder, k, it, source)


class _StopAll:
    """Ends the whole tune once a member reports ``reached`` (eval.target_win_rate)."""

    def __init__(self) -> None:
        self.reached = False

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.reached = self.reached or bool(result.get("reached"))
        return False

    def stop_all(self) -> bool:
        return self.reached


def _forward_stop(stop: Callable[[], bool], done: threading.Event) -> None:
    """Turns ``stop()`` (SIGTERM, or a caller's flag) into the SIGINT on which Ray Tune ends
    a run so that ``Tuner.restore`` continues it (Tune's handler is in place during fit)."""
    while not done.wait(POLL):
        handler = signal.getsignal(signal.SIGINT)
        if stop() and getattr(handler, "__self__", None) is not stop:
            os.kill(os.getpid(), signal.SIGINT)
            return


def run_pbt(
    cfg: RunConfig, folder: Path, resume: bool, stop: Callable[[], bool], address: str,
    console: Console,
) -> None:  # fmt: skip
    """The population on Ray Tune's PBT; Tune's state in ``folder/tune``. A SIGINT (or
    ``stop()``) ends it as Ray Tune does: every member at its last checkpoint."""
    tune_cfg = _tune(cfg)
    _connect(cfg, address)
    from ray import tune
    from ray.tune.stopper import Stopper

    synced = _last_sync(cfg, folder) if resume else 0
    rng = random.Random(tune_cfg.seed if not synced else f"{tune_cfg.seed}-{synced}")

    def explore(config: dict[str, Any]) -> dict[str, Any]:
        values = mutate({key: config[key] for key in tune_cfg.mutations}, tune_cfg, rng)
        return {**config, **values}

    pbt = _scheduler(tune_cfg, explore, synced)
    token = os.environ.get(cfg.learners.token_env)
    env = {cfg.learners.token_env: token} if token else {}
    setup = Setup(cfg.resolved(), str(folder.resolve()), os.getcwd(), env, synced)
    trainable = tune.with_resources(
        tune.with_parameters(pbt_member, setup=setup), {"cpu": cfg.learners.trial_cpus}
    )
    # --resume starts Tune afresh: each member goes on from its own CASI checkpoint, with the
    # values it has there, and PBT's clock at the population's last perturbation
    start = _start_values(cfg, folder, resume)
    stopper: Any = type("StopAll", (_StopAll, Stopper), {})()
    space: dict[str, Any] = {"member": tune.grid_search(list(range(tune_cfg.population)))}
    for key in tune_cfg.mutations:
        space[key] = tune.sample_from(_value_of(start, key))
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(scheduler=pbt, reuse_actors=False),
        run_config=tune.RunConfig(
            name=TUNE_DIR,
            storage_path=str(folder.resolve()),
            stop=stopper,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),  # fmt: skip
    )
    done = threading.Event()
    threading.Thread(target=_forward_stop, args=(stop, done), daemon=True).start()
    try:
        results = tuner.fit()
    finally:
        done.set()
    errors = [results[i].error for i in range(len(results)) if results[i].error is not None]
    if errors and not interrupted(cfg, folder):  # members stopped by SIGINT may end in errors
        raise ResumeError(f"casi tune: {len(errors)} member(s) failed: {errors[0]}")


def _scheduler(tune_cfg: TuneCfg, explore: Callable[[dict[str, Any]], dict[str, Any]],
               synced: int) -> Any:  # fmt: skip
    """Ray Tune's synchronous PBT with its clock at iteration ``synced``.

    A new Tune run counts from 0: a member resumed at iteration 20 would count its first
    report as an interval reached, and PBT's next sync would lie behind the members that are
    ahead, which then stay paused for ever (ray-project/ray#48616 is the same in
    ``Tuner.restore``). Here every member's last perturbation is ``synced`` and the next sync
    one interval later, as in the run that was stopped.
    """
    from ray.tune.schedulers import PopulationBasedTraining

    class ResumedPBT(PopulationBasedTraining):  # type: ignore[misc]
        def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
            super().on_trial_add(tune_controller, trial)
            self._trial_state[trial].last_perturbation_time = synced

    pbt = ResumedPBT(
        time_attr="iteration", metric=SCORE, mode="max",
        perturbation_interval=tune_cfg.interval, quantile_fraction=tune_cfg.quantile,
        custom_explore_fn=explore, synch=True,
    )  # fmt: skip
    pbt._next_perturbation_sync = synced + tune_cfg.interval
    return pbt


def _last_sync(cfg: RunConfig, folder: Path) -> int:
    """The iteration of a stopped population's last perturbation. Members wait for each other
    at every multiple of the interval: the furthest one's last multiple, if a member copied
    there or one went past it; else the multiple before (the members there waited)."""
    interval = _tune(cfg).interval
    furthest = max(_iteration(member_dir(folder, k)) for k in range(_tune(cfg).population))
    sync = furthest // interval * interval
    if sync == 0 or furthest > sync or lineage.copied_at(folder, sync):
        return sync
    return sync - interval


def _iteration(trial_dir: Path) -> int:
    """The iteration of a member's checkpoint (0 without one)."""
    path = find_checkpoint(trial_dir / "checkpoint")
    return int(read_checkpoint(path)[1]["iteration"]) if path is not None else 0


def _value_of(start: list[dict[str, Any]], key: str) -> Callable[[Any], Any]:
    """For ``tune.sample_from``: member ``spec.config["member"]``'s start value of ``key``."""

    def value(spec: Any) -> Any:
        return start[spec.config["member"]][key]

    return value


def _start_values(cfg: RunConfig, folder: Path, resume: bool) -> list[dict[str, Any]]:
    """Every member's values of the mutated keys: the config's, or on resume those of its
    checkpoint."""
    values = []
    for k in range(_tune(cfg).population):
        mine = initial_values(cfg)
        path = find_checkpoint(member_dir(folder, k) / "checkpoint") if resume else None
        if path is not None:
            saved = read_checkpoint(path)[1].get("config") or {}
            for key in mine:
                section, name = key.split(".")
                mine[key] = saved.get(section, {}).get(name, mine[key])
        values.append(mine)
    return values


def _connect(cfg: RunConfig, address: str) -> None:
    """Joins Ray (a local Ray has room for every member at once)."""
    tune_cfg = _tune(cfg)
    need = math.ceil(tune_cfg.population * cfg.learners.trial_cpus)
    ray_learners.connect(address, num_cpus=max(os.cpu_count() or 1, need))


# ---------------------------------------------------------------- tournament selection


class MemberActor(TrialActor):
    """A tournament member in a Ray worker (a :class:`TrialActor` running
    :func:`run_member`)."""

    def train(
        self, cfg: RunConfig, trial: int, folder: Path, resume: bool, console: Console
    ) -> TrialResult:
        return run_member(cfg, trial, folder, resume, self._stop.is_set, console)


def select(scores: list[float], tune: TuneCfg, rng: random.Random) -> tuple[list[int], int | None]:
    """The source of every place of the next generation, and the elite (or None): the best
    member keeps its place (elitism); each other place goes to the best of
    ``tournament_size`` members drawn at random."""
    n = len(scores)
    ranked = [-s if not math.isnan(s) else math.inf for s in scores]
    elite = min(range(n), key=lambda k: ranked[k]) if tune.elitism else None
    sources = []
    for k in range(n):
        if k == elite:
            sources.append(k)
            continue
        drawn = rng.sample(range(n), min(tune.tournament_size, n))
        sources.append(min(drawn, key=lambda j: ranked[j]))
    return sources, elite


def run_tournament(
    cfg: RunConfig, folder: Path, resume: bool, stop: Callable[[], bool], address: str,
    console: Console,
) -> list[TrialResult]:  # fmt: skip
    """The population under tournament selection and mutation; its state in
    ``folder/tournament.json``."""
    tune = _tune(cfg)
    state = _load_state(folder) if resume else None
    if state is None:
        state = {"generation": 0, "values": [initial_values(cfg)] * tune.population,
                 "rng": tune.seed}  # fmt: skip
        for k in range(tune.population):
            lineage.append(folder, k, {"iteration": 0, "event": "start", "source": k},
                           state["values"][k])  # fmt: skip
        _save_state(folder, state)
    rng = random.Random(f"{tune.seed}-{state['generation']}")
    _connect(cfg, address)
    total = cfg.algorithm.iterations
    while True:
        g = state["generation"]
        until = min((g + 1) * tune.interval, total)
        cfgs = [member_config(cfg, v, until) for v in state["values"]]
        results = run_on_actors(MemberActor, cfgs, folder, resume or g > 0, stop, console)
        target = cfg.eval.target_win_rate
        reached = target is not None and any(
            score(r.last_eval, "win_rate") >= target for r in results
        )
        if until >= total or reached or any(r.interrupted for r in results):
            return results
        scores = [score(r.last_eval, tune.metric) for r in results]
        _evolve(cfg, folder, state, scores, until, rng)
        state["generation"] = g + 1
        rng = random.Random(f"{tune.seed}-{g + 1}")
        _save_state(folder, state)


def _evolve(
    cfg: RunConfig, folder: Path, state: dict[str, Any], scores: list[float], it: int,
    rng: random.Random,
) -> None:  # fmt: skip
    """Selection, then mutation; every member's checkpoint replaced by its source's."""
    tune = _tune(cfg)
    sources, elite = select(scores, tune, rng)
    old = list(state["values"])
    staging = folder / ".generation"
    shutil.rmtree(staging, ignore_errors=True)
    for j in sorted(set(sources)):
        shutil.copytree(member_dir(folder, j) / "checkpoint", staging / f"trial-{j}")
    new_values = []
    for k, j in enumerate(sources):
        values = dict(old[j])
        if k != elite and rng.random() < tune.mutation_probability:
            values = mutate(values, tune, rng, [rng.choice(list(tune.mutations))])
        new_values.append(values)
        changes = _copy(staging / f"trial-{j}", member_config(cfg, values), k, folder, values)
        event = "elite" if k == elite else "copy" if j != k else "keep"
        row = {"iteration": it, "event": event, "source": j, "score": scores[k],
               "source_score": scores[j], "mutations": changes}  # fmt: skip
        lineage.append(folder, k, row, values)
    shutil.rmtree(staging, ignore_errors=True)
    state["values"] = new_values


def _load_state(folder: Path) -> dict[str, Any] | None:
    path = folder / STATE
    if not path.exists():
        return None
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResumeError(f"{path}: cannot be read ({exc})") from None
    return state


def _save_state(folder: Path, state: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{STATE}.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, folder / STATE)


# ---------------------------------------------------------------- the command


def run_tune(
    cfg: RunConfig, runs_root: Path, resume: bool, force: bool, stop: Callable[[], bool],
    address: str, console: Console,
) -> Path:  # fmt: skip
    """``casi tune``: the population of ``cfg`` under ``runs_root/<name>``; its lineage and
    best config at the end. Returns the run folder."""
    tune = _tune(cfg)
    folder = runs_root / cfg.name
    held = folder.exists() and any(folder.glob("trial-*"))
    if held and not (resume or force):
        raise FileExistsError(
            f"{folder} holds a population already: continue it with --resume, or replace it "
            "with --force"
        )
    if force and folder.exists():
        shutil.rmtree(folder)
    if not resume:
        lineage.clear(folder)
    if tune.scheduler == "pbt":
        run_pbt(cfg, folder, resume and held, stop, address, console)
    else:
        run_tournament(cfg, folder, resume and held, stop, address, console)
    finish(cfg, folder, console)
    return folder


def finish(cfg: RunConfig, folder: Path, console: Console) -> None:
    """lineage.csv, lineage.png and best_config.toml of a population."""
    rows = lineage.merge(folder, list(_tune(cfg).mutations))
    lineage.plot(folder, rows, cfg.name)
    best, best_score = None, -math.inf
    for k in range(_tune(cfg).population):
        path = find_checkpoint(member_dir(folder, k) / "checkpoint")
        if path is None:
            continue
        value = _last_score(path, _tune(cfg).metric)
        if not math.isnan(value) and value > best_score:
            best, best_score = k, value
    if best is not None:
        text = (member_dir(folder, best) / "config.toml").read_text()
        head = f"# casi tune {cfg.name}: member {best}, {_tune(cfg).metric} {best_score:.3f}\n"
        (folder / BEST).write_text(head + _without_tune(text))
    console.print(
        f"{cfg.name}: lineage in {folder / lineage.CSV}; best member {best} "
        f"({_tune(cfg).metric} {best_score:.3f}), its config in {folder / BEST}",
        markup=False, highlight=False,
    )  # fmt: skip


def _without_tune(text: str) -> str:
    """A resolved config.toml without its [tune] tables (a plain ``casi run`` config)."""
    import tomllib

    import tomli_w

    data = tomllib.loads(text)
    data.pop("tune", None)
    return tomli_w.dumps(data)


def tune_command(args: Any) -> int:
    """``casi tune CONFIG [--resume | --force] [--out DIR] [--iterations N] [--seed S]
    [--ray auto|HOST:PORT]``; the exit status."""
    import sys

    from casi_proto.errors import NetError

    from casi_orchestrator.cli import StopFlag, _signals
    from casi_orchestrator.config import ConfigError, load_config
    from casi_orchestrator.exits import EXIT_ERROR, EXIT_OK, EXIT_SIGNAL_BASE, EXIT_USAGE
    from casi_orchestrator.learners import LearnerStartError

    console = Console(stderr=True)
    try:
        cfg = load_config(args.config, seed=args.seed, iterations=args.iterations)
        if cfg.tune is None:
            raise ConfigError([f"{args.config}: no [tune] section: casi tune needs one"])
    except ConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return EXIT_USAGE
    flag = StopFlag()
    with _signals(flag):
        try:
            run_tune(cfg, args.out, args.resume, args.force, flag, args.ray, console)
        except FileExistsError as exc:
            print(f"casi: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except (LearnerStartError, ResumeError, CheckpointError, NetError) as exc:
            print(f"casi: {exc}", file=sys.stderr)
            return EXIT_ERROR
    if flag.signum:
        return flag.exit_code
    if interrupted(cfg, args.out / cfg.name):
        print(
            f"casi: interrupted; continue with: casi tune {args.config} --resume", file=sys.stderr
        )
        return EXIT_SIGNAL_BASE + signal.SIGINT
    return EXIT_OK


def interrupted(cfg: RunConfig, folder: Path) -> bool:
    """True if no member reached the target and one has not finished its iterations."""
    target, metas = cfg.eval.target_win_rate, []
    for k in range(_tune(cfg).population):
        path = find_checkpoint(member_dir(folder, k) / "checkpoint")
        if path is not None:
            metas.append(read_checkpoint(path)[1])
    if target is not None and any(score(m["last_eval"], "win_rate") >= target for m in metas):
        return False
    return any(m["iteration"] < cfg.algorithm.iterations for m in metas)
