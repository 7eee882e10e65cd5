"""The training loop of SPEC 5, for one trial. Each iteration, top to bottom:

1. rollout (:mod:`rollout`): ``B`` episodes, every learner's Predict once per step for the whole
   batch, concurrently; actions sampled per head;
2. update (:mod:`update`): each agent's exploration bonus on the observations it acted on,
   GAE, then Train on every learner concurrently (``step`` = the iteration, 1, 2, ...);
3. every ``eval.every`` iterations and after the last: evaluation (:mod:`evaluation`) on fixed
   episodes, then backtracking (:mod:`backtrack`) on its metric;
4. the log streams (:mod:`logs`) and a snapshot of the state (:mod:`resume`), written as a
   checkpoint every ``checkpoint.every`` iterations and at the end.

With ``[curriculum]`` (:mod:`curriculum`) the rollouts are in the current stage's game, a stage
with ``until_win_rate`` is also evaluated in its own world after step 3's evaluation, and the
stage ends after step 4 (new simulators for the next stage; the models, optimizers and bonus
counts go on).

A phase that loses a learner is repeated once the learner is back (:mod:`fleet`). Every random
stream comes from ``(seed, trial, purpose, iteration)`` (:mod:`sampling`), so a resumed run
continues exactly as the uninterrupted run would have.

``agent_steps`` counts the (episode, step, learning agent) triples of training rollouts in
which the agent acted (``mask = 1``): steps after an agent is done, evaluation episodes and
scripted agents are not counted.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casi.v1 import net_pb2
from casi_proto.errors import FAILED_PRECONDITION, INVALID_ARGUMENT, NetError
from casi_proto.names import MODELS
from casi_sim import BatchSim

from casi_orchestrator import curriculum, sampling, wire
from casi_orchestrator.checkpoint import find_checkpoint
from casi_orchestrator.config import RunConfig
from casi_orchestrator.evaluation import Details, EvalResult, Metrics, evaluate
from casi_orchestrator.factored import with_relevance
from casi_orchestrator.fleet import Fleet, Member
from casi_orchestrator.learners import LearnerPool
from casi_orchestrator.logs import ActionProbs, Losses, Streams, csv_row, start_fields
from casi_orchestrator.metrics import WIN_RATE
from casi_orchestrator.metrics import column as metrics_column
from casi_orchestrator.outputs import TrialOutput
from casi_orchestrator.resume import (
    Checkpoints,
    ResumeError,
    continuation,
    extend,
    new_state,
    read_state,
    snapshot,
    start_backtracking,
)
from casi_orchestrator.rollout import RolloutBuffer, collect
from casi_orchestrator.tensorboard import TrialBoard
from casi_orchestrator.update import train, training_batch

__all__ = ["ResumeError", "Trainer", "TrialResult"]


@dataclass
class TrialResult:
    """How a trial ended."""

    iteration: int
    agent_steps: int
    wall_time: float
    last_eval: dict[str, Metrics]
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
        self.cfg, self.trial, self.out = cfg, trial, out
        self.should_stop = should_stop
        self.game = cfg.game()
        self.head_sizes = wire.head_sizes(self.game, cfg.algorithm.factored_main)
        self.eval_sim = BatchSim(self.game, batch=cfg.eval.episodes, seed=self._world)
        members = [
            Member(spec.name, slot, index, pool.learners[spec.name])
            for index, (slot, spec) in enumerate(cfg.learning_agents)
        ]
        self.streams = Streams(out, cfg.log, self.game)
        self.board = TrialBoard(out.folder, cfg)
        self.fleet = Fleet(pool, members, self.net_cfg, cfg.learners.remote_wait, self._recovered)
        self.state = new_state(cfg, trial)
        self.checkpoints = Checkpoints(out.folder)
        self._t0 = time.monotonic()
        self._stage_sims()
        if cfg.curriculum is not None:
            out.columns = [*out.columns, *curriculum.columns([m.name for m in members])]

    @property
    def _world(self) -> int:
        return self._seed(sampling.WORLD)

    def _stage_sims(self) -> None:
        """The training simulator of the current curriculum stage (the config's game without
        a curriculum), and the evaluation simulator of the stage's world if it has
        ``until_win_rate``."""
        cfg, stage = self.cfg, self.state.stage
        game = cfg.stage_game(stage) if cfg.curriculum is not None else self.game
        self.sim = BatchSim(game, batch=cfg.algorithm.batch, seed=self._world)
        self.stage_eval_sim: BatchSim | None = None
        cur = cfg.curriculum
        if cur is not None and stage < len(cur.stages) and cur.stages[stage].until_win_rate:
            self.stage_eval_sim = BatchSim(game, batch=cfg.eval.episodes, seed=self._world)

    @property
    def iteration(self) -> int:
        """The last completed iteration (0 before the first)."""
        return self.state.iteration

    def net_cfg(self, member: Member) -> net_pb2.NetCfg:
        """The NetCfg of a learning agent (its seed derives from seed, trial and index)."""
        seed = self._seed(sampling.NET_INIT, member.index)
        return wire.net_cfg(self.cfg.algorithm, self.game, seed)

    def wall_time(self) -> float:
        return self.state.wall_offset + (time.monotonic() - self._t0)

    def close(self) -> None:
        self.board.close()  # run() closes it; callers of run_iteration may not
        self.fleet.close()

    # ---------------------------------------------------------------- the loop

    def run(
        self,
        resume: bool = False,
        on_iteration: Callable[[int, dict[str, Metrics]], None] | None = None,
        on_checkpoint: Callable[[int, Path], None] | None = None,
    ) -> TrialResult:
        """Runs the trial up to ``algorithm.iterations`` (or the first evaluation that meets
        ``eval.target_win_rate``); checkpoints on the way and at the end, each followed by
        ``on_checkpoint(iteration, checkpoint folder)`` (``casi tune`` reports it to Ray Tune).

        If an iteration fails (a learner lost for good), the state after the last completed
        iteration is checkpointed before the error is raised.
        """
        self._t0 = time.monotonic()
        resumed = self.start(resume)
        interrupted = False
        try:
            while not self._finished():
                if self.should_stop():
                    break
                self.run_iteration(self.iteration + 1)
                self._remember()
                if on_iteration is not None:
                    on_iteration(self.iteration, self.state.last_eval)
                if self.iteration % self.cfg.checkpoint.every == 0:
                    self._checkpoint()
                    if on_checkpoint is not None and not self._finished():
                        on_checkpoint(self.iteration, self.checkpoints.path)
            interrupted = self.should_stop() and not self._finished()
            self._checkpoint(finished=not interrupted)
            if on_checkpoint is not None and not interrupted:
                on_checkpoint(self.iteration, self.checkpoints.path)
        except BaseException as exc:
            if self.checkpoints.behind:
                self._checkpoint()
            if isinstance(exc, NetError) and self.checkpoints.written >= 0:
                raise self._explained(exc) from None
            raise
        finally:
            self.out.close()
            self.board.close()
        return TrialResult(
            self.iteration, self.state.agent_steps, self.wall_time(),
            self.state.final_eval or self.state.last_eval,
            self.state.all_stopped, interrupted, resumed and self.state.finished,
        )  # fmt: skip

    def run_iteration(self, it: int) -> None:
        """Iteration ``it`` (1-based): rollout, update, evaluation and backtracking, logs."""
        self.state.iteration = it
        stage = self.state.stage
        roll, probs = self.rollout(it)
        self.state.agent_steps += int(roll.mask.sum())
        losses, bonus_means = self.update(it, roll)
        result, events, stage_rates = None, {}, None
        if it % self.cfg.eval.every == 0:
            result = self.evaluate(it)
            self.state.last_eval = result.metrics
            self.streams.evaluation(it, result)
            stage_rates = self.evaluate_stage(it)
            events = self.backtrack(it, result)
        self.streams.iteration(it, roll, self.state, losses, bonus_means, probs)
        row = csv_row(it, self.state.agent_steps, result, events, losses, bonus_means)
        if self.cfg.curriculum is not None:
            row[curriculum.STAGE] = stage
            for name, rate in (stage_rates or {}).items():
                row[metrics_column(name, curriculum.STAGE_WIN_RATE)] = rate
        row["wall_time"] = round(self.wall_time(), 3)
        if result is None and it == self.cfg.algorithm.iterations:
            # evaluated only because it is the last: written, but it feeds neither
            # backtracking nor the state, and a longer resumed run drops it (resume.extend)
            lines = (self.out.csv_lines, self.out.jsonl_lines)
            self.state.continuation = continuation(lines, row)
            result = self.evaluate(it)
            self.state.final_eval = result.metrics
            self.streams.evaluation(it, result)
            row.update(csv_row(it, self.state.agent_steps, result, {}, losses, bonus_means))
            row["wall_time"] = round(self.wall_time(), 3)  # as every evaluated row: after it
        if self.cfg.log.iteration_csv:
            self.out.row(row)
        self.board.row(row, result)
        self._next_stage(it, stage_rates)
        self.out.flush()

    def _finished(self) -> bool:
        """All iterations done, every agent stopped, or the target win rate reached."""
        done = self.iteration >= self.cfg.algorithm.iterations
        return done or self.state.all_stopped or self.reached_target

    @property
    def reached_target(self) -> bool:
        """True once the last evaluation met ``eval.target_win_rate`` for every agent."""
        target, last = self.cfg.eval.target_win_rate, self.state.last_eval
        if target is None or not last:
            return False
        rates = [last.get(m.name, {}).get(WIN_RATE) for m in self.fleet.members]
        return all(r is not None and r >= target for r in rates)

    # ---------------------------------------------------------------- the phases

    def rollout(self, it: int) -> tuple[RolloutBuffer, ActionProbs | None]:
        """``B`` training episodes with sampled actions (and their probabilities, if logged)."""

        def phase() -> tuple[RolloutBuffer, ActionProbs | None]:
            probs = None
            if self.cfg.log.action_probs:
                probs = ActionProbs([m.slot for m in self.fleet.members], self.head_sizes)
            rng = sampling.rng_for(self.cfg.seed, self.trial, sampling.ROLLOUT_ACTIONS, it)
            seed = self._seed(sampling.ROLLOUT_SIM, it)
            alg = self.cfg.algorithm
            roll = collect(
                self.fleet, self.sim, seed, rng, self.head_sizes, alg.recurrent, probs,
                alg.mask_pointless,
            )  # fmt: skip
            return with_relevance(roll, self.head_sizes), probs

        return self.fleet.recovering(phase)

    def update(self, it: int, roll: RolloutBuffer) -> tuple[Losses, dict[str, float]]:
        """Bonus and GAE for every agent; Train on every agent that has not stopped."""
        batches, bonus_means = {}, {}
        scale = self.cfg.bonus.scale(it)
        for k, m in enumerate(self.fleet.members):
            bonus = self.state.agents[m.name].bonus
            batches[m.name], bonus_means[m.name] = training_batch(
                roll, k, bonus, self.cfg.algorithm, scale
            )
        active = [m for m in self.fleet.members if not self.state.agents[m.name].stopped]
        return train(self.fleet, it, batches, active), bonus_means

    def evaluate(self, it: int) -> EvalResult:
        """``eval.episodes`` fixed episodes, greedy (or sampled), no bonus."""
        log, influence = self.cfg.log, self.cfg.eval.influence and not self.cfg.algorithm.recurrent
        return self._evaluate(it, self.eval_sim, Details(log.trajectories, log.attrs, influence))

    def _evaluate(self, it: int, sim: BatchSim, details: Details) -> EvalResult:
        ev, alg = self.cfg.eval, self.cfg.algorithm

        def phase() -> EvalResult:
            rng = None
            if ev.sample:
                rng = sampling.rng_for(self.cfg.seed, self.trial, sampling.EVAL_ACTIONS, it)
            return evaluate(
                self.fleet, sim, self._seed(sampling.EVAL_SIM), self.head_sizes,
                alg.recurrent, rng, details, alg.mask_pointless,
            )  # fmt: skip

        return self.fleet.recovering(phase)

    def evaluate_stage(self, it: int) -> dict[str, float | None] | None:
        """Every learning agent's win rate in the current stage's world, if that stage ends
        on one (``until_win_rate``): the evaluation of :meth:`evaluate` in that world."""
        if self.stage_eval_sim is None:
            return None
        result = self._evaluate(it, self.stage_eval_sim, Details())
        if self.cfg.log.learning:
            for name, m in result.metrics.items():
                self.out.event(
                    "learning", it, event="stage_eval", agent=name, stage=self.state.stage, **m
                )
        return {name: m[WIN_RATE] for name, m in result.metrics.items()}

    def _next_stage(self, it: int, rates: dict[str, float | None] | None) -> None:
        """Moves to the next curriculum stage if the current one ends after iteration ``it``."""
        cur, state = self.cfg.curriculum, self.state
        if cur is None:
            return
        win_rates = [rates.get(m.name) for m in self.fleet.members] if rates else None
        reason = curriculum.stage_end(cur, state.stage, state.stage_since, it, win_rates)
        if reason is None:
            return
        state.stage, state.stage_since = state.stage + 1, it + 1
        self._stage_sims()
        if self.cfg.log.learning:
            self.out.event(
                "learning", it, event="stage", stage=state.stage, reason=reason,
                agent_steps=state.agent_steps,
            )  # fmt: skip
        print(
            f"{self.cfg.name} trial {self.trial}: after iteration {it} ({reason}, "
            f"{state.agent_steps} agent-steps): {curriculum.describe(cur, state.stage)}",
            file=sys.stderr,
        )

    def backtrack(self, it: int, result: EvalResult) -> dict[str, str]:
        """Each agent's backtracking decision on this evaluation, carried out; the events."""
        return {m.name: self._backtrack(it, m, result.metrics[m.name]) for m in self.fleet.members}

    def _backtrack(self, it: int, member: Member, metrics: Metrics) -> str:
        agent = self.state.agents[member.name]
        bt = agent.backtracker
        if bt is None or agent.stopped:
            return ""
        value = metrics[self.cfg.backtracking.metric]
        metric = math.nan if value is None else float(value)
        params = member.params
        assert params is not None
        decision = bt.observe(metric, lambda: params)
        if decision.kind == "wait":
            return ""
        if decision.restore is not None:
            self.fleet.restore(member, decision.restore, wire.optim_cfg(self.cfg.algorithm))
        if decision.kind == "stop":
            agent.stopped = True
        self.streams.decision(it, member.name, decision.kind, metric, bt)
        return decision.kind

    # ---------------------------------------------------------------- start, resume, checkpoints

    def start(self, resume: bool) -> bool:
        """Inits every learner; on resume restores the checkpoint. False: a fresh start."""
        replies = self.fleet.each(lambda m: m.net.init(self.net_cfg(m)))
        alg = self.cfg.algorithm
        if alg.mask_pointless or alg.factored_main:
            option = "mask_pointless" if alg.mask_pointless else "factored_main"
            _check_masking(self.fleet.members, replies, option)
        _check_model(self.fleet.members, replies, alg.model)
        path = self.checkpoints.path
        if resume and find_checkpoint(path) is not None:
            self._resume()
            self._remember()
            return True
        self.out.write_config(self.cfg.resolved())
        self.out.open()
        self.board.open()
        self.fleet.each(_fetch_params)
        start_backtracking(self.state, self.cfg, self._params())
        self.streams.experiment_start(
            start_fields(self.cfg, self.trial, self.fleet.members, replies)
        )
        self._remember()
        return False

    def _resume(self) -> None:
        resumed = read_state(self.checkpoints.path, self.cfg, self.state, self.trial)
        if self.state.stage:  # __init__ built stage 0's
            self._stage_sims()
        for m in self.fleet.members:
            m.params = resumed.params[m.name]
        try:
            self.fleet.each(lambda m: m.net.set_params(m.params))
        except NetError as exc:
            if exc.code != INVALID_ARGUMENT:
                raise
            raise ResumeError(
                f"{self.checkpoints.path}: a learner refused the checkpoint's parameters: "
                f"{exc.message}"
            ) from None
        lines, row = extend(self.state, resumed.lines, self.cfg, self.out.columns)
        try:
            self.out.open(lines)
        except OSError as exc:
            raise ResumeError(str(exc)) from None
        self.board.open(self.state.agent_steps, replaced=row is not None)
        if row is not None:
            self.out.row(row)
            self.board.row(row)

    def _params(self) -> dict[str, Any]:
        return {m.name: m.params for m in self.fleet.members}

    def _remember(self) -> None:
        """Keeps the state after a completed iteration as the next checkpoint's content."""
        lines = (self.out.csv_lines, self.out.jsonl_lines)
        content = snapshot(
            self.cfg, self.trial, self.state, self._params(), lines, self.wall_time()
        )
        self.checkpoints.remember(content)

    def _checkpoint(self, finished: bool = False) -> None:
        """Writes the remembered state; the lines it covers reach the files first."""
        self.out.flush()
        self.checkpoints.write(finished)

    def _explained(self, exc: NetError) -> NetError:
        """A lost learner's error, with where the run can continue from."""
        return NetError(
            exc.code,
            f"{exc.message}\nthe run stopped; iteration {self.checkpoints.written} is "
            f"checkpointed in {self.checkpoints.path}: continue with `casi run CONFIG --resume`",
        )

    def _recovered(self, event: str, member: Member) -> None:
        self.streams.learner(self.iteration, event, member.name, member.learner.address)

    def _seed(self, purpose: int, *more: int) -> int:
        return sampling.derive_seed(self.cfg.seed, self.trial, purpose, *more)


def _check_masking(members: list[Member], replies: list[net_pb2.InitReply], option: str) -> None:
    for m, reply in zip(members, replies, strict=True):
        if not reply.action_mask:
            raise NetError(
                FAILED_PRECONDITION,
                f"learner {m.name} ({reply.implementation or 'unnamed'}) does not say that its "
                "Train honours Sequences.action_mask (InitReply.action_mask is false); "
                f"[algorithm] {option} = true needs it: update the learner or turn "
                f"{option} off",
            )


def _check_model(members: list[Member], replies: list[net_pb2.InitReply], model: str) -> None:
    for m, reply in zip(members, replies, strict=True):
        if reply.model != MODELS[model]:
            known = reply.model in net_pb2.ModelKind.values()
            built = net_pb2.ModelKind.Name(reply.model) if known else f"model {reply.model}"
            raise NetError(
                FAILED_PRECONDITION,
                f"learner {m.name} ({reply.implementation or 'unnamed'}) built {built}, not the "
                f"{net_pb2.ModelKind.Name(MODELS[model])} that [algorithm] model = {model!r} "
                "asks for (InitReply.model): it does not offer that model; use one that does "
                '(casi-learner --policy torch) or the default model = "mlp"',
            )


def _fetch_params(member: Member) -> None:
    member.params = member.net.get_params()
