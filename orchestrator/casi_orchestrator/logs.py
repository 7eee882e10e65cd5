"""The log streams of a trial: events.jsonl (one stream per ``[log]`` flag) and the
iterations.csv row. What each stream holds is listed in this package's README."""

from __future__ import annotations

from typing import Any

import numpy as np
from casi.v1 import net_pb2
from casi_sim import INTENTION_NAMES, GameConfig

from casi_orchestrator.backtrack import Backtracker
from casi_orchestrator.config import LogCfg, RunConfig
from casi_orchestrator.evaluation import EvalResult, Metrics
from casi_orchestrator.factored import main_actions, main_width, split_probs
from casi_orchestrator.fleet import Member
from casi_orchestrator.metrics import BONUS, EVENT, answers_key, column
from casi_orchestrator.outputs import TrialOutput
from casi_orchestrator.resume import AgentState, TrialState
from casi_orchestrator.rollout import RolloutBuffer
from casi_orchestrator.wire import head_sizes

Losses = dict[str, dict[str, float]]


class ActionProbs:
    """Sums of the action probabilities over a rollout's acted steps, per learning agent.

    Called as the rollout's step observer; intentions are summed over the other agents' slots.
    """

    def __init__(self, slots: list[int], head_sizes: list[int]) -> None:
        self.slots, self.head_sizes = slots, head_sizes
        self.main = np.zeros((len(slots), main_width(head_sizes)))
        self.intentions = np.zeros((len(slots), len(INTENTION_NAMES)))

    def __call__(self, k: int, logits: np.ndarray, acted: np.ndarray) -> None:
        main, intentions = split_probs(logits[acted], self.head_sizes)
        self.main[k] += main.sum(axis=0)
        for j, p in enumerate(intentions):
            if j != self.slots[k]:
                self.intentions[k] += p.sum(axis=0)


class Streams:
    """Writes the events of the streams that ``[log]`` switches on."""

    def __init__(self, out: TrialOutput, log: LogCfg, game: GameConfig) -> None:
        self.out, self.log, self.game = out, log, game

    def experiment_start(self, fields: dict[str, Any]) -> None:
        if self.log.experiment_start:
            self.out.event("experiment_start", 0, **fields)

    def learner(self, it: int, event: str, agent: str, address: str) -> None:
        """A lost learner is back: ``learner_restarted`` or ``learner_reconnected``."""
        if self.log.learning:
            self.out.event("learning", it, event=event, agent=agent, address=address)

    def evaluation(self, it: int, result: EvalResult) -> None:
        log = self.log
        for name, m in result.metrics.items():
            if log.learning:
                self.out.event("learning", it, event="eval", agent=name, **m)
            if log.interactions:
                self.out.event(
                    "interactions", it, agent=name, asked_to=result.asked_to[name],
                    answers={n: m[answers_key(n)] for n in INTENTION_NAMES},
                )  # fmt: skip
        if log.attrs:
            self.out.event("attrs", it, episode=0, **result.world)
        if log.trajectories:
            self.out.event("trajectories", it, episode=0, steps=result.trajectory)

    def decision(self, it: int, agent: str, kind: str, metric: float, bt: Backtracker) -> None:
        """A backtracking decision other than ``wait``."""
        if self.log.learning:
            self.out.event(
                "learning", it, event=kind, agent=agent, metric=metric, best=bt.best,
                pops=bt.pops, restarts=bt.restarts, snapshots=len(bt.snapshots),
            )  # fmt: skip

    def iteration(
        self,
        it: int,
        roll: RolloutBuffer,
        state: TrialState,
        losses: Losses,
        bonus_means: dict[str, float],
        probs: ActionProbs | None,
    ) -> None:
        """The per-iteration streams of every learning agent."""
        for k, (name, agent) in enumerate(state.agents.items()):
            acted = roll.mask[k] > 0
            if self.log.learning and name in losses:
                self.out.event(
                    "learning", it, event="train", agent=name,
                    agent_steps=state.agent_steps, bonus=bonus_means[name],
                    **losses[name],
                )  # fmt: skip
            if self.log.action_probs and probs is not None:
                self._action_probs(it, name, k, acted, probs)
            if self.log.actions_rewards:
                self._actions_rewards(it, name, roll, k, acted, bonus_means[name])
            if self.log.encodings:
                self._encodings(it, name, agent, roll.obs[k][acted])
            if self.log.obs_summary:
                obs = roll.obs[k][acted]
                mean = obs.mean(axis=0) if acted.any() else np.zeros(self.game.obs_dim)
                self.out.event("obs_summary", it, agent=name, mean=mean.round(4))

    def _action_probs(
        self, it: int, name: str, k: int, acted: np.ndarray, probs: ActionProbs
    ) -> None:
        n_acted = max(1, int(acted.sum()))
        others = max(1, self.game.n_agents - 1)
        self.out.event(
            "action_probs", it, agent=name, main=(probs.main[k] / n_acted).round(4),
            intentions=(probs.intentions[k] / (n_acted * others)).round(4),
        )  # fmt: skip

    def _actions_rewards(
        self, it: int, name: str, roll: RolloutBuffer, k: int, acted: np.ndarray, bonus: float
    ) -> None:
        n_guesses = self.game.attrs.count * self.game.attrs.values
        main = main_actions(roll.actions[k], self.game)[acted]
        self.out.event(
            "actions_rewards", it, agent=name,
            noop=float((main == 0).mean()) if main.size else 0.0,
            guess=float(((main >= 1) & (main <= n_guesses)).mean()) if main.size else 0.0,
            ask=float((main > n_guesses).mean()) if main.size else 0.0,
            return_points=float(roll.rewards[k].sum(axis=1).mean()),
            bonus=bonus,
        )  # fmt: skip

    def _encodings(self, it: int, name: str, agent: AgentState, obs: np.ndarray) -> None:
        codes = agent.bonus.codes(obs) if len(obs) else np.zeros(0)
        state = agent.bonus.state()
        self.out.event(
            "encodings", it, agent=name, distinct_in_batch=int(np.unique(codes).size),
            table_size=int(state["keys"].size),
            top_count=int(state["counts"].max()) if state["counts"].size else 0,
        )  # fmt: skip


def csv_row(
    it: int,
    agent_steps: int,
    result: EvalResult | None,
    events: dict[str, str],
    losses: Losses,
    bonus_means: dict[str, float],
) -> dict[str, Any]:
    """One iterations.csv row (``wall_time`` is added when it is written)."""
    row: dict[str, Any] = {"iteration": it, "agent_steps": agent_steps}
    for name, bonus in bonus_means.items():
        if result is not None:
            metrics: Metrics = result.metrics[name]
            row.update({column(name, key): value for key, value in metrics.items()})
            row[column(name, EVENT)] = events.get(name, "")
        row.update({column(name, key): value for key, value in losses.get(name, {}).items()})
        row[column(name, BONUS)] = bonus
    return row


def start_fields(
    cfg: RunConfig, trial: int, members: list[Member], replies: list[net_pb2.InitReply]
) -> dict[str, Any]:
    """The ``experiment_start`` event: the run, its agents and what their learners reported."""
    game = cfg.game()
    learners = {
        m.name: {
            "address": m.learner.address,
            "implementation": r.implementation,
            "device": r.device,
            "n_params": int(r.n_params),
        }
        for m, r in zip(members, replies, strict=True)
    }
    return {
        "experiment": cfg.name,
        "trial": trial,
        "seed": cfg.seed,
        "fingerprint": cfg.fingerprint(),
        "agents": [s.model_dump(exclude_none=True) for s in cfg.agent_specs],
        "obs_dim": game.obs_dim,
        "head_sizes": head_sizes(game, cfg.algorithm.factored_main),
        "learners": learners,
    }
