"""The training loop of SPEC 5, for one trial.

One iteration:

1. rollout: ``BatchSim.reset(seed)``, ``InitHidden(B)`` (recurrent models only: it is a no-op
   for feed-forward ones), ``T`` steps; every learner's Predict once per step for the whole
   batch, concurrently; actions sampled per head (Gumbel-max);
2. the exploration bonus of each agent on the observations it acted on, added to the scaled
   game reward of that step;
3. GAE, then Train on every learner concurrently, ``step`` = the iteration number (1, 2, ...),
   and GetParams, kept to give a lost learner back its state;
4. every ``eval.every`` iterations (and after the last): greedy evaluation on fixed episodes,
   then backtracking on the evaluation metric.

Every random stream comes from ``(seed, trial, purpose, iteration)`` (:mod:`sampling`), so a
run resumed from a checkpoint continues exactly as the uninterrupted run would have.

``agent_steps`` counts the (episode, step, learning agent) triples of training rollouts in
which the agent acted (``mask = 1``): steps after an agent is done, evaluation episodes and
scripted agents are not counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from casi.v1 import net_pb2
from casi_proto import PROTOCOL_VERSION
from casi_proto.api import Params, Sequences
from casi_proto.errors import DEADLINE_EXCEEDED, FAILED_PRECONDITION, UNAVAILABLE, NetError
from casi_sim import BatchSim

from casi_orchestrator import sampling
from casi_orchestrator.backtrack import Backtracker
from casi_orchestrator.bonus import CountBonus
from casi_orchestrator.checkpoint import (
    CheckpointError,
    find_checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from casi_orchestrator.config import RunConfig
from casi_orchestrator.gae import gae
from casi_orchestrator.learners import Learner, LearnerPool
from casi_orchestrator.outputs import INTENTION_NAMES, TrialOutput

T = TypeVar("T")
LOSSES = {
    "ppo": net_pb2.LOSS_PPO,
    "a2c": net_pb2.LOSS_A2C,
    "reinforce": net_pb2.LOSS_REINFORCE,
    "reinforce_baseline": net_pb2.LOSS_REINFORCE_BASELINE,
}
OPTIMIZERS = {
    "adam": net_pb2.OPTIM_ADAM,
    "rmsprop": net_pb2.OPTIM_RMSPROP,
    "sgd": net_pb2.OPTIM_SGD,
}
ACTIVATIONS = {"tanh": net_pb2.ACTIVATION_TANH, "relu": net_pb2.ACTIVATION_RELU}
N_INTENTIONS = 5
RECOVERY_ATTEMPTS = 3


class ResumeError(Exception):
    """A checkpoint cannot be resumed from; the message names the file."""


@dataclass
class AgentState:
    """One learning agent inside the loop."""

    name: str
    slot: int
    index: int
    learner: Learner
    bonus: CountBonus
    backtracker: Backtracker | None = None
    params: Params | None = None
    stopped: bool = False

    @property
    def net(self) -> Any:
        return self.learner.net


@dataclass
class Rollout:
    """Training data of one iteration; arrays are [L, B, T, ...] over learning agents."""

    obs: np.ndarray
    actions: np.ndarray
    logp: np.ndarray
    values: np.ndarray
    rewards: np.ndarray
    mask: np.ndarray
    probs_main: np.ndarray
    probs_intent: np.ndarray


@dataclass
class EvalResult:
    """Metrics of one evaluation per agent name, plus details for the log streams."""

    metrics: dict[str, dict[str, float | None]]
    asked_to: dict[str, list[float]]
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    world: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrialResult:
    """How a trial ended."""

    iteration: int
    agent_steps: int
    wall_time: float
    last_eval: dict[str, dict[str, float | None]]
    stopped_early: bool
    interrupted: bool
    already_done: bool = False


class Trainer:
    """Runs one trial of an experiment against already connected learners."""

    def __init__(
        self,
        cfg: RunConfig,
        trial: int,
        pool: LearnerPool,
        out: TrialOutput,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.cfg, self.trial, self.pool, self.out = cfg, trial, pool, out
        self.should_stop = should_stop
        self.game = cfg.game()
        self.na = self.game.n_agents
        self.head_sizes = [self.game.n_main_actions] + [N_INTENTIONS] * self.na
        self.obs_dim = self.game.obs_dim
        self.sim_seed = world_seed = self._seed(sampling.WORLD)
        self.sim = BatchSim(self.game, batch=cfg.algorithm.batch, seed=world_seed)
        self.eval_sim = BatchSim(self.game, batch=cfg.eval.episodes, seed=world_seed)
        self.agents: list[AgentState] = []
        for index, (slot, spec) in enumerate(cfg.learning_agents):
            bonus = CountBonus(
                cfg.bonus.kind,
                self.obs_dim,
                bits=cfg.bonus.bits,
                quant_bits=cfg.bonus.quant_bits,
                beta=cfg.bonus.beta,
                seed=self._seed(sampling.BONUS, index),
            )
            learner = pool.learners[spec.name]
            self.agents.append(AgentState(spec.name, slot, index, learner, bonus))
        self.executor = ThreadPoolExecutor(max_workers=max(1, len(self.agents)))
        self.iteration = 0
        self.agent_steps = 0
        self.wall_offset = 0.0
        self.last_eval: dict[str, dict[str, float | None]] = {}
        self.init_replies: dict[str, net_pb2.InitReply] = {}
        self._snapshot: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None
        self._written = -1
        self._failed: dict[str, NetError] = {}
        self._t0 = time.monotonic()
        self.finished_before = False

    # ---------------------------------------------------------------- seeds and configs

    def _seed(self, purpose: int, *more: int) -> int:
        return sampling.derive_seed(self.cfg.seed, self.trial, purpose, *more)

    def optim_cfg(self) -> net_pb2.OptimCfg:
        a = self.cfg.algorithm
        return net_pb2.OptimCfg(
            kind=OPTIMIZERS[a.optimizer], lr=a.lr, momentum=a.momentum, eps=a.eps
        )

    def net_cfg(self, agent: AgentState) -> net_pb2.NetCfg:
        """The NetCfg of a learning agent (its seed derives from seed, trial and index)."""
        a = self.cfg.algorithm
        return net_pb2.NetCfg(
            protocol_version=PROTOCOL_VERSION,
            obs_dim=self.obs_dim,
            head_sizes=self.head_sizes,
            hidden_sizes=a.hidden_sizes,
            recurrent=a.recurrent,
            seed=self._seed(sampling.NET_INIT, agent.index),
            loss=LOSSES[a.loss],
            optim=self.optim_cfg(),
            clip=a.clip,
            value_coef=a.value_coef,
            entropy_coef=a.entropy_coef,
            epochs=a.epochs,
            minibatches=a.minibatches,
            max_grad_norm=a.max_grad_norm,
            clip_value=a.clip_value,
            activation=ACTIVATIONS[a.activation],
        )

    # ---------------------------------------------------------------- concurrency, faults

    def _each(
        self, fn: Callable[[AgentState], T], agents: list[AgentState] | None = None
    ) -> list[T]:
        """``fn`` on every agent, concurrently; the first error is raised once all are done.

        The agents whose call failed are kept in ``_failed`` for :meth:`_recovering`.
        """
        agents = self.agents if agents is None else agents

        def call(a: AgentState) -> T:
            try:
                return fn(a)
            except NetError as exc:
                self._failed[a.name] = exc
                raise

        if len(agents) == 1:
            return [call(agents[0])]
        futures = [self.executor.submit(call, a) for a in agents]
        errors = [f.exception() for f in futures]
        for err in errors:
            if err is not None:
                raise err
        return [f.result() for f in futures]

    def _recovering(self, phase: Callable[[], T]) -> T:
        """Runs ``phase``; if a learner was lost and is back, runs it again.

        A locally started learner that died is restarted; a remote one that stopped answering
        is waited for (``learners.remote_wait``). Either is re-Init-ed and given its last
        parameters and optimizer state before the phase is repeated.
        """
        for attempt in range(RECOVERY_ATTEMPTS):
            self._failed = {}
            try:
                return phase()
            except NetError:
                failed = dict(self._failed)
                local = any(a.learner.local for a in self.agents if a.name in failed)
                dead = self._dead_agents(wait=3.0 if local else 0.0)
                lost = [a for a in self.agents if a.name in failed and a.learner.remote]
                if not (dead or lost) or attempt == RECOVERY_ATTEMPTS - 1:
                    raise
                for agent in dead:
                    self._revive(agent)
                for agent in lost:
                    self._reconnect(agent, failed[agent.name])
        raise AssertionError("unreachable")

    def _dead_agents(self, wait: float = 3.0) -> list[AgentState]:
        """Locally started learners whose process exited (waiting up to ``wait`` s for one)."""
        local = [a for a in self.agents if a.learner.local]
        deadline = time.monotonic() + wait
        while local:
            dead = [a for a in local if not a.learner.alive()]
            if dead or time.monotonic() >= deadline:
                return dead
            time.sleep(0.1)
        return []

    def _reconnect(self, agent: AgentState, error: NetError) -> None:
        """Waits up to ``learners.remote_wait`` s for a remote learner, then restores it.

        Only a learner that is gone (unreachable, or back without its model) is waited for;
        one that answers its health check but missed a deadline is hung: ``error`` is raised.
        """
        net, wait = agent.net, self.cfg.learners.remote_wait
        if error.code == DEADLINE_EXCEEDED:
            try:
                serving = net.health(timeout=1.0) == "SERVING"
            except NetError:
                serving = False
            if serving:
                raise error from None
        elif error.code not in (UNAVAILABLE, FAILED_PRECONDITION):
            raise error from None
        try:
            net.wait_ready(wait)
        except NetError:
            raise NetError(
                error.code,
                f"{error.message}; waited {wait:g} s (learners.remote_wait) for it to answer again",
            ) from None
        self._give_back(agent)
        self.out.event(
            "learning", self.iteration, event="learner_reconnected", agent=agent.name,
            address=agent.learner.address,
        )  # fmt: skip

    def _revive(self, agent: AgentState) -> None:
        """Restarts a dead local learner and gives it back its last parameters."""
        agent.learner = self.pool.restart(agent.name)
        self._give_back(agent)
        self.out.event(
            "learning", self.iteration, event="learner_restarted", agent=agent.name,
            address=agent.learner.address,
        )  # fmt: skip

    def _give_back(self, agent: AgentState) -> None:
        """Init, then the parameters and optimizer state of the last completed Train."""
        agent.net.init(self.net_cfg(agent))
        if agent.params is not None:
            agent.net.set_params(agent.params)

    # ---------------------------------------------------------------- start and resume

    def start(self, resume: bool) -> bool:
        """Inits every learner; on resume restores the checkpoint. False: nothing to resume."""
        ckpt = self.out.folder / "checkpoint"
        replies = self._each(lambda a: a.net.init(self.net_cfg(a)))
        self.init_replies = {a.name: r for a, r in zip(self.agents, replies, strict=True)}
        if resume and find_checkpoint(ckpt) is not None:
            self._restore(ckpt)
            self.snapshot()
            return True
        self.out.write_config(self.cfg.resolved())
        self.out.open()
        self._each(self._fetch_params)
        bt = self.cfg.backtracking
        for a in self.agents:
            if bt.enabled:
                assert a.params is not None
                a.backtracker = Backtracker(
                    bt.pop_limit, bt.restart_limit, bt.unimproved_limit, a.params
                )
        if self.cfg.log.experiment_start:
            self.out.event("experiment_start", 0, **self._start_fields())
        self.snapshot()
        return False

    def _start_fields(self) -> dict[str, Any]:
        learners = {
            a.name: {
                "address": a.learner.address,
                "implementation": r.implementation,
                "device": r.device,
                "n_params": int(r.n_params),
            }
            for a, r in zip(self.agents, self.init_replies.values(), strict=True)
        }
        return {
            "experiment": self.cfg.name,
            "trial": self.trial,
            "seed": self.cfg.seed,
            "fingerprint": self.cfg.fingerprint(),
            "agents": [s.model_dump(exclude_none=True) for s in self.cfg.agent_specs],
            "obs_dim": self.obs_dim,
            "head_sizes": self.head_sizes,
            "learners": learners,
        }

    def _fetch_params(self, agent: AgentState) -> None:
        agent.params = agent.net.get_params()

    def snapshot(self) -> None:
        """Remembers the state after a completed iteration as the next checkpoint's content."""
        self.out.flush()
        arrays: dict[str, np.ndarray] = {}
        for a in self.agents:
            assert a.params is not None
            for key, arr in a.params.tensors.items():
                arrays[f"net/{a.name}/tensors/{key}"] = arr
            for key, arr in a.params.optimizer.items():
                arrays[f"net/{a.name}/optimizer/{key}"] = arr
            arrays[f"net/{a.name}/version"] = np.array([a.params.version], np.int64)
            for key, arr in a.bonus.state().items():
                arrays[f"bonus/{a.name}/{key}"] = arr
            if a.backtracker is not None:
                arrays.update(a.backtracker.state(f"bt/{a.name}/"))
        meta = {
            "experiment": self.cfg.name,
            "trial": self.trial,
            "iteration": self.iteration,
            "agent_steps": self.agent_steps,
            "wall_time": self.wall_time(),
            "csv_lines": self.out.csv_lines,
            "jsonl_lines": self.out.jsonl_lines,
            "fingerprint": self.cfg.fingerprint(),
            "agents": [a.name for a in self.agents],
            "stopped": [a.stopped for a in self.agents],
            "last_eval": self.last_eval,
        }
        self._snapshot = (arrays, meta)

    def checkpoint(self, finished: bool = False) -> None:
        """Writes the last completed iteration's state (atomically) to ``checkpoint/``."""
        if self._snapshot is None:
            return
        arrays, meta = self._snapshot
        write_checkpoint(self.out.folder / "checkpoint", arrays, {**meta, "finished": finished})
        self._written = int(meta["iteration"])

    def _restore(self, path: Path) -> None:
        try:
            arrays, meta = read_checkpoint(path)
        except CheckpointError as exc:
            raise ResumeError(str(exc)) from None
        if meta.get("fingerprint") != self.cfg.fingerprint():
            raise ResumeError(
                f"{path}: written by a different config (fingerprint {meta.get('fingerprint')}, "
                f"this config {self.cfg.fingerprint()}); only algorithm.iterations, [log], "
                "[checkpoint] and [learners] may change between a run and its resume"
            )
        names = [a.name for a in self.agents]
        if meta.get("agents") != names:
            raise ResumeError(f"{path}: holds agents {meta.get('agents')}, expected {names}")
        bt = self.cfg.backtracking
        for a in self.agents:
            a.params = _read_params(arrays, f"net/{a.name}/")
            bonus_state = _prefixed(arrays, f"bonus/{a.name}/")
            try:
                a.bonus.load(bonus_state)
                if bt.enabled:
                    a.backtracker = Backtracker.from_state(
                        arrays, f"bt/{a.name}/", bt.pop_limit, bt.restart_limit,
                        bt.unimproved_limit,
                    )  # fmt: skip
            except ValueError as exc:
                raise ResumeError(f"{path}: {exc}") from None
        self._each(lambda a: a.net.set_params(a.params))
        self.iteration = int(meta["iteration"])
        self.agent_steps = int(meta["agent_steps"])
        self.wall_offset = float(meta["wall_time"])
        self.last_eval = meta.get("last_eval") or {}
        for a, stopped in zip(self.agents, meta.get("stopped", []), strict=False):
            a.stopped = bool(stopped)
        try:
            self.out.open((int(meta["csv_lines"]), int(meta["jsonl_lines"])))
        except OSError as exc:
            raise ResumeError(str(exc)) from None
        self.finished_before = bool(meta.get("finished"))

    # ---------------------------------------------------------------- the loop

    def wall_time(self) -> float:
        return self.wall_offset + (time.monotonic() - self._t0)

    def run(
        self,
        resume: bool = False,
        on_iteration: Callable[[int, dict[str, dict[str, float | None]]], None] | None = None,
    ) -> TrialResult:
        """Runs the trial up to ``algorithm.iterations`` (or the first evaluation that meets
        ``eval.target_win_rate``); checkpoints on the way and at the end.

        If an iteration fails (a learner lost for good), the state after the last completed
        iteration is checkpointed before the error is raised.
        """
        self._t0 = time.monotonic()
        resumed = self.start(resume)
        total = self.cfg.algorithm.iterations
        interrupted = False
        try:
            while self.iteration < total and not (self.all_stopped or self.reached_target):
                if self.should_stop():
                    break
                self.step(self.iteration + 1)
                self.snapshot()
                if on_iteration is not None:
                    on_iteration(self.iteration, self.last_eval)
                if self.iteration % self.cfg.checkpoint.every == 0:
                    self.checkpoint()
            interrupted = (
                self.should_stop()
                and self.iteration < total
                and not (self.all_stopped or self.reached_target)
            )
            self.checkpoint(finished=not interrupted)
        except BaseException as exc:
            if self._snapshot is not None and self._snapshot[1]["iteration"] > self._written:
                self.checkpoint()
            if isinstance(exc, NetError) and self._written >= 0:
                raise NetError(
                    exc.code,
                    f"{exc.message}\nthe run stopped; iteration {self._written} is checkpointed in "
                    f"{self.out.folder / 'checkpoint'}: continue with `casi run CONFIG --resume`",
                ) from None
            raise
        finally:
            self.out.close()
        return TrialResult(
            self.iteration, self.agent_steps, self.wall_time(), self.last_eval,
            self.all_stopped, interrupted, resumed and self.finished_before,
        )  # fmt: skip

    @property
    def all_stopped(self) -> bool:
        return all(a.stopped for a in self.agents)

    @property
    def reached_target(self) -> bool:
        """True once the last evaluation met ``eval.target_win_rate`` for every agent."""
        target = self.cfg.eval.target_win_rate
        if target is None or not self.last_eval:
            return False
        rates = [self.last_eval.get(a.name, {}).get("win_rate") for a in self.agents]
        return all(r is not None and r >= target for r in rates)

    def close(self) -> None:
        self.executor.shutdown(wait=True)

    def step(self, it: int) -> None:
        """One full iteration ``it`` (1-based)."""
        self.iteration = it
        roll = self._recovering(lambda: self.rollout(it))
        self.agent_steps += int(roll.mask.sum())
        losses, bonus_means = self.learn(it, roll)
        row: dict[str, Any] = {"iteration": it, "agent_steps": self.agent_steps}
        total = self.cfg.algorithm.iterations
        if it % self.cfg.eval.every == 0 or it == total:
            result = self._recovering(lambda: self.evaluate(it))
            self.last_eval = result.metrics
            self._log_eval(it, result)
            for a in self.agents:
                for key, value in result.metrics[a.name].items():
                    row[f"{a.name}.{key}"] = value
                row[f"{a.name}.event"] = self._backtrack(it, a, result.metrics[a.name])
        for a in self.agents:
            for key, value in losses.get(a.name, {}).items():
                row[f"{a.name}.{key}"] = value
            row[f"{a.name}.bonus"] = bonus_means[a.name]
        self._log_rollout(it, roll, losses, bonus_means)
        row["wall_time"] = round(self.wall_time(), 3)
        if self.cfg.log.iteration_csv:
            self.out.row(row)
        self.out.flush()

    # ---------------------------------------------------------------- rollout

    def _init_hidden(self, batch: int) -> None:
        if self.cfg.algorithm.recurrent:
            self._each(lambda a: a.net.init_hidden(batch))

    def _act(
        self,
        sim_obs: np.ndarray,
        rng: np.random.Generator | None,
    ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray], list[np.ndarray]]:
        preds = self._each(lambda a: a.net.predict(np.ascontiguousarray(sim_obs[:, a.slot])))
        actions, logps = [], []
        for logits, _ in preds:
            act, logp = sampling.sample_heads(logits, self.head_sizes, rng)
            actions.append(act)
            logps.append(logp)
        return preds, actions, logps

    def _joint(self, actions: list[np.ndarray], batch: int) -> tuple[np.ndarray, np.ndarray]:
        main = np.zeros((batch, self.na), np.int64)
        intentions = np.zeros((batch, self.na, self.na), np.int64)
        for a, act in zip(self.agents, actions, strict=True):
            main[:, a.slot] = act[:, 0]
            intentions[:, a.slot, :] = act[:, 1:]
        return main, intentions

    def rollout(self, it: int) -> Rollout:
        """``B`` training episodes with sampled actions."""
        n, batch, steps = len(self.agents), self.cfg.algorithm.batch, self.game.max_steps
        rng = sampling.rng_for(self.cfg.seed, self.trial, sampling.ROLLOUT_ACTIONS, it)
        obs = self.sim.reset(self._seed(sampling.ROLLOUT_SIM, it))
        self._init_hidden(batch)
        roll = Rollout(
            obs=np.zeros((n, batch, steps, self.obs_dim), np.float32),
            actions=np.zeros((n, batch, steps, len(self.head_sizes)), np.int64),
            logp=np.zeros((n, batch, steps), np.float32),
            values=np.zeros((n, batch, steps), np.float32),
            rewards=np.zeros((n, batch, steps), np.float32),
            mask=np.zeros((n, batch, steps), np.float32),
            probs_main=np.zeros((n, self.head_sizes[0])),
            probs_intent=np.zeros((n, N_INTENTIONS)),
        )
        done = np.zeros((batch, self.na), bool)
        slots = [a.slot for a in self.agents]
        for t in range(steps):
            preds, actions, logps = self._act(obs, rng)
            for k, a in enumerate(self.agents):
                roll.obs[k, :, t] = obs[:, a.slot]
                roll.actions[k, :, t] = actions[k]
                roll.logp[k, :, t] = logps[k]
                roll.values[k, :, t] = preds[k][1]
                if self.cfg.log.action_probs:
                    self._accumulate_probs(roll, k, preds[k][0], ~done[:, a.slot])
            roll.mask[:, :, t] = (~done[:, slots]).T
            obs, reward, done, _ = self.sim.step(*self._joint(actions, batch))
            roll.rewards[:, :, t] = reward[:, slots].T
        return roll

    def _accumulate_probs(
        self, roll: Rollout, k: int, logits: np.ndarray, acted: np.ndarray
    ) -> None:
        probs = sampling.head_probs(logits[acted], self.head_sizes)
        roll.probs_main[k] += probs[0].sum(axis=0)
        own = self.agents[k].slot
        for j, p in enumerate(probs[1:]):
            if j != own:
                roll.probs_intent[k] += p.sum(axis=0)

    # ---------------------------------------------------------------- learning

    def learn(self, it: int, roll: Rollout) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        """Bonus, GAE and Train on every agent that has not stopped."""
        alg = self.cfg.algorithm
        batches: dict[str, Sequences] = {}
        bonus_means: dict[str, float] = {}
        for k, a in enumerate(self.agents):
            acted = roll.mask[k] > 0
            bonus = np.zeros(acted.shape, np.float32)
            bonus[acted] = a.bonus(roll.obs[k][acted])
            bonus_means[a.name] = float(bonus[acted].mean()) if acted.any() else 0.0
            rewards = roll.rewards[k] * np.float32(alg.reward_scale) + bonus
            adv, ret = gae(rewards, roll.values[k], roll.mask[k], alg.gamma, alg.lam)
            batches[a.name] = Sequences(
                obs=roll.obs[k], actions=roll.actions[k], logp_old=roll.logp[k],
                values_old=roll.values[k], advantages=adv, returns=ret, mask=roll.mask[k],
            )  # fmt: skip
        active = [a for a in self.agents if not a.stopped]

        def train(a: AgentState) -> dict[str, float]:
            loss = a.net.train(it, batches[a.name])
            a.params = a.net.get_params()
            return loss

        results = self._recovering(lambda: self._each(train, active))
        return {a.name: r for a, r in zip(active, results, strict=True)}, bonus_means

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, it: int) -> EvalResult:
        """``eval.episodes`` fixed episodes, greedy (or sampled), no bonus."""
        episodes, steps = self.cfg.eval.episodes, self.game.max_steps
        rng = None
        if self.cfg.eval.sample:
            rng = sampling.rng_for(self.cfg.seed, self.trial, sampling.EVAL_ACTIONS, it)
        obs = self.eval_sim.reset(self._seed(sampling.EVAL_SIM))
        self._init_hidden(episodes)
        slots = [a.slot for a in self.agents]
        n = len(slots)
        ret = np.zeros((episodes, n))
        won = np.zeros((episodes, n), bool)
        win_step = np.zeros((episodes, n))
        asked = np.zeros((episodes, n))
        answers = np.zeros((episodes, n, N_INTENTIONS))
        asked_to = np.zeros((n, self.na))
        done = np.zeros((episodes, self.na), bool)
        trajectory = []
        c, m = self.game.attrs.count, self.game.attrs.values
        for t in range(steps):
            _, actions, _ = self._act(obs, rng)
            main, intentions = self._joint(actions, episodes)
            for k, a in enumerate(self.agents):
                acting = ~done[:, a.slot]
                ask = main[:, a.slot] - 1 - c * m
                is_ask = acting & (ask >= 0)
                np.add.at(asked_to[k], ask[is_ask] // c, 1)
            if self.cfg.log.trajectories:
                trajectory.append(self._trajectory_step(t, main, intentions, done))
            obs, reward, done, info = self.eval_sim.step(main, intentions)
            ret += reward[:, slots]
            new_win = info["won"][:, slots] & ~won
            win_step[new_win] = t + 1
            won |= new_win
            asked += info["asked"][:, slots]
            answers += info["answers"][:, slots, :]
            if trajectory:
                trajectory[-1]["rewards"] = reward[0].tolist()
        metrics = {}
        for k, a in enumerate(self.agents):
            wins = won[:, k]
            row: dict[str, float | None] = {
                "return": float(ret[:, k].mean()),
                "win_rate": float(wins.mean()),
                "steps_to_win": float(win_step[wins, k].mean()) if wins.any() else None,
                "questions": float(asked[:, k].mean()),
            }
            for i, name in enumerate(INTENTION_NAMES):
                row[f"answers_{name}"] = float(answers[:, k, i].mean())
            metrics[a.name] = row
        world = {}
        if self.cfg.log.attrs:
            state = self.eval_sim.state()
            world = {key: np.asarray(state[key][0]).tolist() for key in state}
        asked_lists = {a.name: (asked_to[k] / episodes).tolist() for k, a in enumerate(self.agents)}
        return EvalResult(metrics, asked_lists, trajectory, world)

    def _trajectory_step(
        self, t: int, main: np.ndarray, intentions: np.ndarray, done: np.ndarray
    ) -> dict[str, Any]:
        return {
            "t": t,
            "actions": {
                a.name: [int(main[0, a.slot]), *intentions[0, a.slot].tolist()]
                for a in self.agents
                if not done[0, a.slot]
            },
        }

    # ---------------------------------------------------------------- backtracking

    def _backtrack(self, it: int, agent: AgentState, metrics: dict[str, float | None]) -> str:
        bt = agent.backtracker
        if bt is None or agent.stopped:
            return ""
        value = metrics[self.cfg.backtracking.metric]
        metric = math.nan if value is None else float(value)
        assert agent.params is not None
        params = agent.params
        decision = bt.observe(metric, lambda: params)
        if decision.kind == "wait":
            return ""
        if decision.restore is not None:
            restore = decision.restore

            def apply(a: AgentState) -> None:
                a.net.set_params(restore)
                a.net.reset_optimizer(self.optim_cfg())
                a.params = a.net.get_params()

            self._recovering(lambda: self._each(apply, [agent]))
        if decision.kind == "stop":
            agent.stopped = True
        if self.cfg.log.learning:
            self.out.event(
                "learning", it, event=decision.kind, agent=agent.name, metric=metric,
                best=bt.best, pops=bt.pops, restarts=bt.restarts, snapshots=len(bt.snapshots),
            )  # fmt: skip
        return decision.kind

    # ---------------------------------------------------------------- log streams

    def _log_eval(self, it: int, result: EvalResult) -> None:
        log = self.cfg.log
        for a in self.agents:
            if log.learning:
                self.out.event("learning", it, event="eval", agent=a.name, **result.metrics[a.name])
            if log.interactions:
                m = result.metrics[a.name]
                self.out.event(
                    "interactions", it, agent=a.name, asked_to=result.asked_to[a.name],
                    answers={n: m[f"answers_{n}"] for n in INTENTION_NAMES},
                )  # fmt: skip
        if log.attrs:
            self.out.event("attrs", it, episode=0, **result.world)
        if log.trajectories:
            self.out.event("trajectories", it, episode=0, steps=result.trajectory)

    def _log_rollout(
        self,
        it: int,
        roll: Rollout,
        losses: dict[str, dict[str, float]],
        bonus_means: dict[str, float],
    ) -> None:
        log = self.cfg.log
        c, m = self.game.attrs.count, self.game.attrs.values
        for k, a in enumerate(self.agents):
            acted = roll.mask[k] > 0
            n_acted = max(1, int(acted.sum()))
            if log.learning and a.name in losses:
                self.out.event(
                    "learning", it, event="train", agent=a.name, agent_steps=self.agent_steps,
                    bonus=bonus_means[a.name], **losses[a.name],
                )  # fmt: skip
            if log.action_probs:
                others = max(1, self.na - 1)
                self.out.event(
                    "action_probs", it, agent=a.name, main=(roll.probs_main[k] / n_acted).round(4),
                    intentions=(roll.probs_intent[k] / (n_acted * others)).round(4),
                )  # fmt: skip
            if log.actions_rewards:
                main = roll.actions[k][..., 0][acted]
                self.out.event(
                    "actions_rewards", it, agent=a.name,
                    noop=float((main == 0).mean()) if main.size else 0.0,
                    guess=float(((main >= 1) & (main <= c * m)).mean()) if main.size else 0.0,
                    ask=float((main > c * m).mean()) if main.size else 0.0,
                    return_points=float(roll.rewards[k].sum(axis=1).mean()),
                    bonus=bonus_means[a.name],
                )  # fmt: skip
            if log.encodings:
                codes = a.bonus.codes(roll.obs[k][acted]) if acted.any() else np.zeros(0)
                state = a.bonus.state()
                self.out.event(
                    "encodings", it, agent=a.name, distinct_in_batch=int(np.unique(codes).size),
                    table_size=int(state["keys"].size),
                    top_count=int(state["counts"].max()) if state["counts"].size else 0,
                )  # fmt: skip
            if log.obs_summary:
                mean = roll.obs[k][acted].mean(axis=0) if acted.any() else np.zeros(self.obs_dim)
                self.out.event("obs_summary", it, agent=a.name, mean=mean.round(4))


def _prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}


def _read_params(arrays: dict[str, np.ndarray], prefix: str) -> Params:
    version = arrays.get(prefix + "version")
    if version is None:
        raise ResumeError(f"checkpoint has no learner state under {prefix!r}")
    return Params(
        tensors=_prefixed(arrays, prefix + "tensors/"),
        optimizer=_prefixed(arrays, prefix + "optimizer/"),
        version=int(version[0]),
    )
