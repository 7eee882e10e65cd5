"""Run configuration: pydantic models loaded from one TOML file.

The game keys of the simulator (``max_steps``, ``init``, ``end_on_first_win``, ``[attrs]``,
``[incentives]``) sit at the top level beside ``seed`` and ``agents``; everything about
learning lives in sections. :func:`load_config` reports every mistake at once, one line each:
``file: dotted.key: what was expected (got ...)``.

Limits checked at load, before anything is allocated (SPEC 8; the README's failure table):

- the file: at most :data:`MAX_FILE_BYTES`, UTF-8 TOML;
- every float: finite (``nan`` and ``inf`` are refused, naming the key);
- ``name``: at most :data:`MAX_NAME_BYTES` bytes, no ``/``, ``\\``, control characters, no
  leading ``.`` (so never ``..``): the run folder ``--out/<name>`` stays inside ``--out``;
- memory: :func:`memory_estimate` (rollouts, evaluation, models) must fit in
  :data:`DEFAULT_MEMORY_GB` GiB, or the ``CASI_MEMORY_GB`` environment variable;
- scale: ``max_steps x (reward_scale x the sum of the incentives x (1 + prosocial) +
  bonus.beta)``, the largest scaled return of an episode, at most :data:`MAX_RETURN` (its
  square, in the value loss, stays far inside float32).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from casi_proto.sizes import n_params
from casi_sim.config import Kind as AgentKind
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

GAME_KEYS = ("max_steps", "init", "end_on_first_win", "attrs", "incentives")
SECTIONS = ("algorithm", "bonus", "backtracking", "eval", "log", "checkpoint", "learners")
DEFAULT_TOKEN_ENV = "CASI_TOKEN"
MAX_FILE_BYTES = 1 << 20
MAX_NAME_BYTES = 100
MAX_AGENT_NAME = 64
DEFAULT_MEMORY_GB = 16.0
MEMORY_ENV = "CASI_MEMORY_GB"
MAX_RETURN = 1e12
_BAD_NAME_CHARS = re.compile(r"[/\\\x00-\x1f\x7f\ud800-\udfff]")


class Section(BaseModel):
    """Base of every config model: unknown keys are errors, and values are never coerced
    (``"10"`` is not an integer, ``"yes"`` not a boolean; an integer is a fine float)."""

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True)


class AgentSpec(Section):
    """One agent slot of the game."""

    name: str = Field(
        default="", max_length=MAX_AGENT_NAME, pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$|^$"
    )
    """Name used in outputs and in ``--learner NAME=HOST:PORT``; default ``a<index>``."""
    kind: AgentKind = "learner"
    """``learner`` (a Net service) or a scripted kind played inside the simulator."""
    address: str | None = None
    """``HOST:PORT`` of a running learner, ``inprocess``, ``ray`` (placed by Ray), or none to
    start one as ``learners.placement`` says."""


class AlgorithmCfg(Section):
    """How the learners are trained."""

    loss: Literal["ppo", "a2c", "reinforce", "reinforce_baseline"] = "ppo"
    """Loss minimised by Train."""
    gamma: float = Field(default=0.99, ge=0.0, le=1.0)
    """Discount factor."""
    lam: float = Field(default=0.95, ge=0.0, le=1.0)
    """GAE lambda."""
    batch: int = Field(default=256, ge=1, le=1_000_000)
    """Episodes per iteration (the simulator's batch)."""
    iterations: int = Field(default=100, ge=1)
    """Training iterations per trial."""
    optimizer: Literal["adam", "rmsprop", "sgd"] = "adam"
    """Optimizer family."""
    lr: float = Field(default=5e-4, gt=0.0)
    """Learning rate."""
    eps: float = Field(default=1e-5, gt=0.0)
    """Optimizer epsilon (Adam, RMSprop)."""
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Momentum (SGD, RMSprop)."""
    epochs: int = Field(default=4, ge=1, le=1000)
    """Passes over each batch (PPO)."""
    minibatches: int = Field(default=4, ge=1)
    """Minibatches per pass."""
    clip: float = Field(default=0.2, gt=0.0)
    """PPO clip range."""
    clip_value: bool = False
    """Clip the value update around the old values (PPO)."""
    value_coef: float = Field(default=0.5, ge=0.0)
    """Weight of the value loss."""
    entropy_coef: float = Field(default=0.01, ge=0.0)
    """Weight of the entropy bonus."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip; <= 0 disables it."""
    hidden_sizes: list[int] = Field(default_factory=lambda: [128, 128], min_length=1)
    """Widths of the MLP trunk."""
    activation: Literal["tanh", "relu"] = "tanh"
    """Activation of the hidden layers."""
    recurrent: bool = False
    """Add an LSTM after the trunk."""
    reward_scale: float = Field(default=0.01, gt=0.0)
    """Game points are multiplied by this before entering the algorithm."""
    mask_pointless: bool = False
    """Sample (in rollouts and evaluations) only among the actions that are not pointless
    (casi_sim.masks), and train that masked policy. An aid beyond the original study."""
    factored_main: bool = False
    """Give the learner the main action as four heads (kind: noop, guess or ask; attribute;
    agent asked; value guessed) instead of one head of all main actions; the orchestrator
    composes the game's action from them, and only the heads the sampled kind uses enter the
    log-probability and the entropy. Not with ``mask_pointless``."""
    model: Literal["mlp", "slots"] = "mlp"
    """The learner's model (NetCfg.model). ``mlp``: the MLP of ``hidden_sizes``. ``slots``: the
    same trunk, and one network shared by every attribute for the main head's guess and ask
    logits, so that what is learned about one attribute (and value) holds for all
    (casi_learner.slots). Not with ``recurrent`` or ``factored_main``."""

    @model_validator(mode="after")
    def _compatible(self) -> AlgorithmCfg:
        """``factored_main`` goes with neither ``mask_pointless`` nor ``model = "slots"``, and
        ``recurrent`` does not go with ``model = "slots"``."""
        if self.factored_main and self.mask_pointless:
            raise ValueError(
                "factored_main and mask_pointless do not go together (the mask is over the "
                "game's main actions, not over the factored heads): turn one of them off"
            )
        if self.model == "slots" and (self.factored_main or self.recurrent):
            other = "factored_main" if self.factored_main else "recurrent"
            raise ValueError(
                f'model = "slots" and {other} do not go together (the slot model computes '
                f"the game's own main head, feed-forward): turn {other} off or use the mlp"
            )
        return self

    @model_serializer(mode="wrap")
    def _without_new_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``factored_main`` and ``model`` only when not their defaults: the fingerprints of
        the runs from before the keys existed stay as they were, and their checkpoints resume."""
        data: dict[str, Any] = handler(self)
        if not self.factored_main:
            data.pop("factored_main", None)
        if self.model == "mlp":
            data.pop("model", None)
        return data

    @field_validator("hidden_sizes")
    @classmethod
    def _positive_widths(cls, v: list[int]) -> list[int]:
        """Every width >= 1."""
        if any(w < 1 for w in v):
            raise ValueError(f"every width must be >= 1, got {v}")
        return v


class BonusCfg(Section):
    """Count-based exploration bonus."""

    kind: Literal["none", "simhash", "superbit"] = "simhash"
    """Hash of the observation whose visit counts give the bonus."""
    bits: int = Field(default=16, ge=1, le=64)
    """Code length k (simhash) or number of groups (superbit)."""
    quant_bits: int = Field(default=2, ge=1, le=16)
    """Bits per group after quantisation (superbit)."""
    beta: float = Field(default=0.05, ge=0.0)
    """Bonus scale: beta / sqrt(count), in scaled reward units."""
    decay_iterations: int = Field(default=0, ge=0)
    """Beta falls linearly to 0 over this many iterations, then stays 0 (0: beta throughout)."""

    def scale(self, iteration: int) -> float:
        """The factor on ``beta`` in training iteration ``iteration`` (1-based)."""
        if self.decay_iterations == 0:
            return 1.0
        return max(0.0, 1.0 - (iteration - 1) / self.decay_iterations)


class BacktrackingCfg(Section):
    """Three-level backtracking on the evaluation metric (SPEC 5 item 6)."""

    enabled: bool = False
    """Turn backtracking and its early stop on."""
    pop_limit: int = Field(default=2, ge=0)
    """Pops allowed before stopping early."""
    restart_limit: int = Field(default=3, ge=0)
    """Restarts from the top snapshot before a pop."""
    unimproved_limit: int = Field(default=10, ge=0)
    """Evaluations without improvement before a restart."""
    metric: Literal["return", "win_rate"] = "return"
    """Evaluation metric to maximise."""


class EvalCfg(Section):
    """Periodic evaluation on fixed episodes."""

    every: int = Field(default=5, ge=1)
    """Evaluate every this many iterations (and after the last one)."""
    episodes: int = Field(default=256, ge=1)
    """Episodes per evaluation (always the same ones)."""
    sample: bool = False
    """Sample actions instead of taking the argmax of each head."""
    influence: bool = False
    """Measure how much each answer received moves the next action (feed-forward models)."""
    target_win_rate: float | None = Field(default=None, gt=0.0, le=1.0)
    """End the trial once every learning agent's evaluated win rate is >= this (none: off)."""


class LogCfg(Section):
    """Which streams are written (events.jsonl, iterations.csv, TensorBoard)."""

    action_probs: bool = False
    """Mean action probabilities per head, per iteration and agent."""
    actions_rewards: bool = False
    """Main-action kinds and rewards of the rollout, per iteration and agent."""
    attrs: bool = False
    """The world of the first evaluation episode, per evaluation."""
    encodings: bool = False
    """Hash codes of the rollout's observations, per iteration and agent."""
    experiment_start: bool = True
    """One event at the start of a trial: seed, agents, learners."""
    interactions: bool = False
    """Questions asked per partner and answers by intention, per evaluation."""
    iteration_csv: bool = True
    """Write iterations.csv (one row per iteration)."""
    learning: bool = True
    """Losses per iteration, evaluation metrics and backtracking events."""
    obs_summary: bool = False
    """Mean of every observation entry over the rollout, per iteration and agent."""
    tensorboard: bool = True
    """TensorBoard event files in ``trial-<k>/tb/`` (scalars of iterations.csv, ``comm/``)."""
    trajectories: bool = False
    """The first evaluation episode step by step, per evaluation."""


class CheckpointCfg(Section):
    """Checkpoints for --resume."""

    every: int = Field(default=10, ge=1)
    """Write a checkpoint every this many iterations (and at the end)."""


class LearnersCfg(Section):
    """Learner processes and calls."""

    start_timeout: float = Field(default=60.0, gt=0.0)
    """Seconds to wait for a learner to become ready."""
    rpc_timeout: float = Field(default=60.0, gt=0.0)
    """Deadline of every call except Train, in seconds."""
    train_timeout: float = Field(default=600.0, gt=0.0)
    """Deadline of Train, in seconds."""
    threads: int = Field(default=1, ge=0)
    """Torch threads of a locally started learner (0: torch's default)."""
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    """Device of a locally started learner."""
    max_message_mb: int = Field(default=256, ge=1)
    """gRPC message size limit (MiB) of the orchestrator's calls and of local learners."""
    remote_wait: float = Field(default=30.0, ge=0.0)
    """Seconds to wait for a learner given by address that stops answering mid-run (0: none)."""
    pipeline: int = Field(default=1, ge=1, le=16)
    """Parts of a pipelined rollout (1: none): while the learners compute one part's Predict,
    the orchestrator samples and steps another. The same numbers as without, as long as the
    learner's forward pass gives each row the same result in a part of the batch (parts of a
    multiple of 16 rows do for the torch learner here); feed-forward models only."""
    token_env: str = Field(default=DEFAULT_TOKEN_ENV, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Environment variable holding the bearer token sent to every learner."""
    tls_ca: str | None = None
    """PEM CA certificate the remote learners' certificates must chain to; turns TLS on."""
    tls_cert: str | None = None
    """PEM client certificate for mutual TLS (with ``tls_key``; needs ``tls_ca``)."""
    tls_key: str | None = None
    """PEM key of ``tls_cert``."""
    tls_server_name: str | None = None
    """Name checked against the learners' certificates instead of the host of the address."""
    placement: Literal["local", "ray"] = "local"
    """Where the learners without an address run: ``local`` subprocesses, or Ray actors."""
    num_cpus: float = Field(default=1.0, ge=0.0)
    """CPUs Ray reserves for each learner it places."""
    num_gpus: float = Field(default=0.0, ge=0.0)
    """GPUs Ray reserves for each learner it places."""
    resources: dict[str, float] = Field(default_factory=dict)
    """Custom Ray resources each learner it places needs, e.g. ``{ gpu_host = 1 }``."""
    max_restarts: int = Field(default=3, ge=-1)
    """Restarts Ray makes of a learner it placed that died (-1: no limit)."""
    trial_cpus: float = Field(default=1.0, ge=0.0)
    """CPUs Ray reserves for each trial under ``casi run --ray`` (it runs the simulator and
    starts its local learners)."""

    @field_validator("tls_ca", "tls_cert", "tls_key")
    @classmethod
    def _readable(cls, v: str | None) -> str | None:
        """An existing file (a relative path starts from the working directory)."""
        if v is not None and not Path(v).is_file():
            raise ValueError(
                f"no such file {v!r} (relative paths start from the working directory)"
            )
        return v

    @model_validator(mode="after")
    def _tls_pairs(self) -> LearnersCfg:
        """``tls_cert`` and ``tls_key`` go together; they and ``tls_server_name`` need
        ``tls_ca``."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(
                "tls_cert and tls_key go together (the client certificate and its key)"
            )
        if self.tls_ca is None and (self.tls_cert is not None or self.tls_server_name is not None):
            raise ValueError(
                "tls_cert, tls_key and tls_server_name need tls_ca (TLS is on with tls_ca)"
            )
        return self


class StageCfg(Section):
    """One stage of ``[curriculum]``: game keys laid over the config's game (``attrs`` and
    ``incentives`` key by key), and when the stage ends (``until_win_rate``, ``iterations``,
    or both: the first that happens)."""

    # the fields named in GAME_KEYS; attrs.count and attrs.values only at the config's
    # values (the observation and the action heads keep their sizes)
    max_steps: int | None = None
    """Steps per episode in this stage."""
    init: Literal["fixed", "random"] | None = None
    """``fixed`` or ``random`` world per episode in this stage."""
    end_on_first_win: bool | None = None
    """End the episode for everyone at the first win, in this stage."""
    attrs: dict[str, Any] | None = None
    """Keys of ``[attrs]``: ``goal``, ``direct`` (``count`` and ``values`` only at the
    config's values)."""
    incentives: dict[str, Any] | None = None
    """Keys of ``[incentives]`` (e.g. ``{ cost_incorrect_guess = 5 }``)."""
    until_win_rate: float | None = Field(default=None, gt=0.0, le=1.0)
    """End the stage at the first evaluation in the stage's world (every ``eval.every``
    iterations) at which every learning agent's win rate is >= this."""
    iterations: int | None = Field(default=None, ge=1)
    """End the stage after this many iterations."""

    @model_validator(mode="after")
    def _ends_and_changes(self) -> StageCfg:
        """A stage ends (``until_win_rate`` or ``iterations``) and sets at least one game key
        (the config's own game follows the last stage by itself)."""
        if self.until_win_rate is None and self.iterations is None:
            raise ValueError(
                "a stage needs until_win_rate or iterations (or both), else it never ends; "
                "the config's own game follows the last stage by itself"
            )
        if all(getattr(self, key) is None for key in GAME_KEYS):
            raise ValueError(
                "a stage sets at least one game key (attrs, incentives, max_steps, init, "
                "end_on_first_win); the config's own game follows the last stage by itself, "
                "so it is not written as a stage"
            )
        return self

    def game_keys(self) -> dict[str, Any]:
        """The game keys this stage sets."""
        return {k: getattr(self, k) for k in GAME_KEYS if getattr(self, k) is not None}


class CurriculumCfg(Section):
    """Easier games before the config's own (off when absent). Each stage's game is the
    config's with the stage's keys laid over it; the model, the optimizer and the bonus counts
    carry over from stage to stage, so a stage keeps the sizes of the observation and of the
    action heads. The evaluations that iterations.csv reports, ``eval.target_win_rate`` and
    backtracking are on the config's own game throughout; a stage with ``until_win_rate`` is
    also evaluated in its own world (``<agent>.stage_win_rate``). The column ``stage`` is the
    stage of each iteration (0, 1, ... as listed; the config's own game is the last number)."""

    stages: list[StageCfg] = Field(min_length=1, max_length=16)
    """The stages before the config's own game, in order."""


MUTABLE_KEYS = {
    "algorithm": ("gamma", "lam", "batch", "lr", "eps", "momentum", "epochs", "minibatches",
                  "clip", "value_coef", "entropy_coef", "max_grad_norm", "reward_scale"),
    "bonus": ("beta", "decay_iterations"),
}  # fmt: skip
"""The keys ``[tune] mutations`` may change: numbers that leave a checkpoint's arrays valid."""


class MutationCfg(Section):
    """How ``casi tune`` perturbs one config key: ``choices``, or ``range`` and/or ``factors``."""

    choices: list[float] | None = Field(default=None, min_length=1)
    """Values to pick from (PBT moves to a neighbour in the list, or resamples)."""
    range: list[float] | None = Field(default=None, min_length=2, max_length=2)
    """``[low, high]``: resampled uniformly (log-uniformly with ``log``); factors stay inside."""
    log: bool = False
    """Resample ``range`` log-uniformly (both ends > 0)."""
    factors: list[float] | None = Field(default=None, min_length=1)
    """Multiply the value by one of these, e.g. ``[0.8, 1.25]``."""

    @model_validator(mode="after")
    def _one_kind(self) -> MutationCfg:
        """``choices`` alone, or ``range`` and/or ``factors``; a range with low < high (> 0
        with ``log``); factors > 0."""
        if self.choices is not None and (self.range is not None or self.factors is not None):
            raise ValueError("choices go alone (without range or factors)")
        if self.choices is None and self.range is None and self.factors is None:
            raise ValueError("give choices, range or factors")
        if self.range is not None:
            low, high = self.range
            if not low < high or (self.log and low <= 0):
                raise ValueError(
                    f"range must be [low, high] with low < high (and low > 0 with log), "
                    f"got {self.range}"
                )
        if self.factors is not None and any(f <= 0 for f in self.factors):
            raise ValueError(f"factors must be > 0, got {self.factors}")
        return self


class TuneCfg(Section):
    """Population-based training, ``casi tune`` (ignored by ``casi run``)."""

    scheduler: Literal["pbt", "tournament"] = "pbt"
    """``pbt`` (Ray Tune's PopulationBasedTraining) or ``tournament`` (selection with elitism,
    then mutation, as AgileRL does)."""
    population: int = Field(default=4, ge=2, le=64)
    """Members trained at once."""
    metric: Literal["win_rate", "return"] = "win_rate"
    """Evaluation metric ranked (the mean over the learning agents), higher is better."""
    interval: int = Field(default=50, ge=1)
    """Iterations between perturbations (a multiple of eval.every; checkpoints at each)."""
    quantile: float = Field(default=0.25, gt=0.0, le=0.5)
    """PBT: the bottom fraction copies a member of the top fraction."""
    resample_probability: float = Field(default=0.25, ge=0.0, le=1.0)
    """Probability that a mutated key is drawn anew (from choices or range) instead of
    perturbed."""
    tournament_size: int = Field(default=2, ge=1)
    """Tournament: members drawn per tournament; the best of them fills a place."""
    elitism: bool = True
    """Tournament: the best member goes on unchanged."""
    mutation_probability: float = Field(default=0.5, ge=0.0, le=1.0)
    """Tournament: probability that a selected (non-elite) member has one key mutated."""
    seed: int = Field(default=0, ge=0)
    """Seed of the scheduler's own draws (tournaments, mutations)."""
    mutations: dict[str, MutationCfg] = Field(min_length=1)
    """Per dotted key (``"algorithm.lr"``, ``"bonus.beta"``): how it is mutated."""

    @field_validator("mutations", mode="before")
    @classmethod
    def _mutable(cls, v: Any) -> Any:
        """Keys of algorithm (gamma, lam, batch, lr, eps, momentum, epochs, minibatches, clip,
        value_coef, entropy_coef, max_grad_norm, reward_scale) or bonus (beta, decay_iterations)."""
        allowed = [f"{s}.{k}" for s, keys in MUTABLE_KEYS.items() for k in keys]
        bad = sorted(set(v) - set(allowed)) if isinstance(v, dict) else []
        if bad:
            raise ValueError(
                f"cannot mutate {', '.join(bad)}: the keys that may be mutated are "
                f"{', '.join(allowed)}"
            )
        return v


class RunConfig(Section):
    """A whole experiment: game, agents, algorithm, logging."""

    name: str = ""
    """Experiment name (output folder); default: the file's stem."""

    @field_validator("name")
    @classmethod
    def _folder_name(cls, v: str) -> str:
        """A plain folder name: at most 100 bytes, no ``/``, ``\\``, control characters or
        leading ``.``."""
        if len(v.encode(errors="surrogatepass")) > MAX_NAME_BYTES:
            raise ValueError(
                f"at most {MAX_NAME_BYTES} bytes (it names the run folder; "
                "default: the file's stem)"
            )
        if not v or v.startswith(".") or _BAD_NAME_CHARS.search(v):
            raise ValueError(
                "expected a plain folder name: no '/', '\\', control characters or leading "
                "'.' (the run folder is --out/<name>; default: the file's stem)"
            )
        return v

    seed: int = Field(default=0, ge=0, lt=2**63)
    """Run seed; every random stream of trial k derives from (seed, k, purpose, iteration)."""
    agents: list[AgentSpec | AgentKind] = Field(min_length=2, max_length=16)
    """Agent kinds, or tables {name, kind, address}; names are unique, at least one is a
    ``learner``."""
    max_steps: Any = None
    """Steps per episode (game key)."""
    init: Any = None
    """``fixed`` or ``random`` world per episode (game key)."""
    end_on_first_win: Any = None
    """End the episode for everyone at the first win (game key)."""
    attrs: Any = None
    """count, direct, goal, values (game key)."""
    incentives: Any = None
    """Costs and rewards of SPEC 2.4 (game key)."""
    algorithm: AlgorithmCfg = Field(default_factory=AlgorithmCfg)
    """Training algorithm."""
    bonus: BonusCfg = Field(default_factory=BonusCfg)
    """Exploration bonus."""
    backtracking: BacktrackingCfg = Field(default_factory=BacktrackingCfg)
    """Backtracking."""
    eval: EvalCfg = Field(default_factory=EvalCfg)
    """Evaluation."""
    log: LogCfg = Field(default_factory=LogCfg)
    """Logging streams."""
    checkpoint: CheckpointCfg = Field(default_factory=CheckpointCfg)
    """Checkpoints."""
    learners: LearnersCfg = Field(default_factory=LearnersCfg)
    """Learner processes."""
    tune: TuneCfg | None = None
    """Population-based training (``casi tune``); see docs/tune.md."""
    curriculum: CurriculumCfg | None = None
    """Easier games before this one (off when absent); see docs/learning.md."""

    @model_validator(mode="after")
    def _tune_interval(self) -> RunConfig:
        """``tune.interval`` is a multiple of ``eval.every`` (members are ranked on a fresh
        evaluation)."""
        if self.tune is not None and self.tune.interval % self.eval.every:
            raise ValueError(
                f"tune.interval ({self.tune.interval}) must be a multiple of eval.every "
                f"({self.eval.every})"
            )
        return self

    @property
    def agent_specs(self) -> list[AgentSpec]:
        """The agents as tables (after loading, every entry is one)."""
        return [a if isinstance(a, AgentSpec) else AgentSpec(kind=a) for a in self.agents]

    @property
    def learning_agents(self) -> list[tuple[int, AgentSpec]]:
        """(slot index, spec) of every learning agent."""
        return [(i, a) for i, a in enumerate(self.agent_specs) if a.kind == "learner"]

    def game_dict(self) -> dict[str, Any]:
        """Keyword arguments of casi_sim.GameConfig."""
        out: dict[str, Any] = {"agents": [a.kind for a in self.agent_specs]}
        for key in GAME_KEYS:
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def game(self) -> Any:
        """The casi_sim.GameConfig of this run."""
        from casi_sim import GameConfig

        return GameConfig(**self.game_dict())

    @property
    def n_stages(self) -> int:
        """Stages of the curriculum, the config's own game included (1 without one)."""
        return 1 + (len(self.curriculum.stages) if self.curriculum is not None else 0)

    def stage_game_dict(self, stage: int) -> dict[str, Any]:
        """:meth:`game_dict` of curriculum stage ``stage`` (the last one: the config's own)."""
        from casi_orchestrator.curriculum import merge

        base = self.game_dict()
        if self.curriculum is None or stage >= len(self.curriculum.stages):
            return base
        return merge(base, self.curriculum.stages[stage].game_keys())

    def stage_game(self, stage: int) -> Any:
        """The casi_sim.GameConfig of curriculum stage ``stage``."""
        from casi_sim import GameConfig

        return GameConfig(**self.stage_game_dict(stage))

    def resolved(self) -> dict[str, Any]:
        """Every key with its value, game defaults filled in (what config.toml gets)."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["agents"] = [a.model_dump(mode="json", exclude_none=True) for a in self.agent_specs]
        game = self.game().model_dump(mode="json")
        for key in GAME_KEYS:
            if key in game:
                data[key] = game[key]
        return data

    def fingerprint(self) -> str:
        """Hash of everything that decides the numbers of a run (not iterations, logging)."""
        data = self.resolved()
        data["algorithm"].pop("iterations", None)
        data["eval"].pop("target_win_rate", None)
        for key in ("log", "checkpoint", "learners", "name", "tune"):
            data.pop(key, None)
        for agent in data["agents"]:
            agent.pop("address", None)
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class ConfigError(Exception):
    """A config could not be loaded; ``lines`` holds one message per mistake."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _dotted(loc: tuple[Any, ...]) -> str:
    parts = []
    for item in loc:
        # pydantic adds the union branch name to locations; it means nothing to a user
        if isinstance(item, str) and (item in ("AgentSpec", "function-after") or "[" in item):
            continue
        parts.append(str(item))
    return ".".join(parts) or "(top level)"


def _table_model(annotation: Any) -> Any:
    """The model of a field that holds one (``X``, ``X | None`` or ``list[X]``)."""
    if annotation == CurriculumCfg | None:
        return CurriculumCfg
    if annotation == list[StageCfg]:
        return CurriculumCfg  # its stages are walked by index
    return annotation


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the table at ``loc`` (for spelling suggestions)."""
    if loc[-1:] in (("attrs",), ("incentives",)) and (len(loc) == 1 or loc[0] == "curriculum"):
        import casi_sim

        return list((casi_sim.Attrs if loc[-1] == "attrs" else casi_sim.Incentives).model_fields)
    model: Any = RunConfig
    for part in loc:
        if isinstance(part, int) and model is CurriculumCfg:
            model = StageCfg  # curriculum.stages.<i>
            continue
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = _table_model(getattr(field, "annotation", None))
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return list(AgentSpec.model_fields) if "agents" in loc else []
        model = annotation
    return list(model.model_fields)


_EXPECTED = {
    "int_type": "expected an integer, written without quotes or a decimal point",
    "float_type": "expected a number, written without quotes",
    "bool_type": "expected true or false, written without quotes",
    "string_type": "expected a string, in quotes",
    "list_type": "expected a list [...]",
    "model_type": "expected a table",
    "dict_type": "expected a table",
}
_TOML_TYPES = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}


def _unknown(loc: tuple[Any, ...], got: Any) -> str:
    """'unknown key/section' with the closest valid name, or the valid names."""
    key, known = str(loc[-1]), _known_keys(loc[:-1])
    what = "section" if len(loc) == 1 and isinstance(got, dict) else "key"
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown {what}; did you mean {close[0]!r}?"
    if not known:
        return f"unknown {what} (check its spelling and section)"
    if len(loc) == 1:
        tables = (*SECTIONS, "attrs", "incentives", "tune", "curriculum")
        sections = [k for k in known if k in tables]
        plain = [k for k in known if k not in tables]
        names = sections if what == "section" else plain
        return f"unknown {what}; the {what}s are {', '.join(names)} (check its spelling)"
    table = _dotted(loc[:-1])
    table = f"[{table}]" if len(loc) == 2 else table
    return f"unknown {what}; the keys of {table} are {', '.join(known)}"


def _describe(err: Any) -> str:
    """One error of pydantic in words: what was expected, and the value got."""
    msg = str(err["msg"]).removeprefix("Value error, ")
    kind = err.get("type", "")
    got = err.get("input")
    if kind == "extra_forbidden":
        return _unknown(tuple(err["loc"]), got)
    if kind == "missing":
        return "required key is missing"
    if kind in _EXPECTED:
        msg = _EXPECTED[kind]
        if type(got) in _TOML_TYPES:
            return f"{msg}, not {_TOML_TYPES[type(got)]} (got {_short(got)})"
    if isinstance(got, dict | list) or got is None:
        return msg
    return f"{msg} (got {_short(got)})"


def _short(value: Any) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _error_lines(source: str, errors: list[Any], prefix: tuple[Any, ...] = ()) -> list[str]:
    lines = []
    seen = set()
    for err in errors:
        loc = prefix + tuple(err["loc"])
        line = f"{source}: {_dotted(loc)}: {_describe(err)}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


def _agent_errors(source: str, agents: Any) -> list[str]:
    """Errors of the agents list that pydantic's union would report twice, reported once."""
    if not isinstance(agents, list):
        return []
    lines = []
    kinds = AgentKind.__args__  # type: ignore[attr-defined]
    for i, item in enumerate(agents):
        if isinstance(item, str) and item not in kinds:
            allowed = ", ".join(repr(k) for k in kinds)
            lines.append(f"{source}: agents.{i}: expected one of {allowed} (got {item!r})")
        elif isinstance(item, dict):
            try:
                AgentSpec.model_validate(item)
            except ValidationError as exc:
                lines += _error_lines(source, exc.errors(), ("agents", i))
        elif not isinstance(item, str):
            lines.append(f"{source}: agents.{i}: expected a kind or a table (got {item!r})")
    return lines


def _name_agents(data: dict[str, Any], source: str) -> list[str]:
    """Turns every agents entry into a table with a name; returns naming errors."""
    agents = data.get("agents")
    if not isinstance(agents, list):
        return []
    named: list[Any] = []
    for i, item in enumerate(agents):
        if isinstance(item, str):
            item = {"kind": item}
        if isinstance(item, dict):
            item = dict(item)
            if not item.get("name"):
                item["name"] = f"a{i}"
        named.append(item)
    data["agents"] = named
    names = [a["name"] for a in named if isinstance(a, dict) and isinstance(a.get("name"), str)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    return [f"{source}: agents: names must be unique, {n!r} is used twice" for n in dupes]


def apply_learner_overrides(data: dict[str, Any], overrides: dict[str, str]) -> list[str]:
    """Sets ``address`` of the named learners (``--learner NAME=HOST:PORT``)."""
    lines = []
    agents = data.get("agents")
    agents = agents if isinstance(agents, list) else []
    by_name = {a.get("name"): a for a in agents if isinstance(a, dict)}
    for name, address in overrides.items():
        agent = by_name.get(name)
        if agent is None:
            known = ", ".join(str(n) for n in by_name) or "none"
            lines.append(f"--learner {name}={address}: no agent named {name!r} (agents: {known})")
        elif agent.get("kind", "learner") != "learner":
            lines.append(
                f"--learner {name}={address}: agent {name!r} is a scripted "
                f"{agent.get('kind')!r} agent, not a learner"
            )
        else:
            agent["address"] = address
    return lines


def parse_learner_flags(flags: list[str]) -> tuple[dict[str, str], list[str]]:
    """``NAME=HOST:PORT`` strings -> ({name: address}, errors)."""
    out: dict[str, str] = {}
    errors = []
    for flag in flags:
        name, sep, address = flag.partition("=")
        if not sep or not name or not address:
            errors.append(f"--learner {flag!r}: expected NAME=HOST:PORT (or NAME=inprocess)")
        else:
            out[name] = address
    return out, errors


def validate_config(
    data: dict[str, Any], source: str, overrides: dict[str, str] | None = None
) -> RunConfig:
    """Validates a parsed TOML table; raises ConfigError with every mistake."""
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: (top level): expected a table (got {type(data).__name__})"])
    data = dict(data)
    not_finite = dict(_non_finite(data))
    if not data.get("name"):
        data["name"] = Path(source).stem
    lines = _name_agents(data, source)
    lines += apply_learner_overrides(data, overrides or {})
    cfg = None
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        agent_lines = _agent_errors(source, data.get("agents"))
        other = [
            e for e in exc.errors() if not (e["loc"] and e["loc"][0] == "agents" and agent_lines)
        ]
        lines += agent_lines
        if other:
            lines += _error_lines(source, other)
    agents = data.get("agents")
    kinds = [a.get("kind", "learner") for a in agents if isinstance(a, dict)] if agents else []
    game_lines = _game_errors(source, kinds, {k: data[k] for k in GAME_KEYS if k in data})
    lines += game_lines
    if cfg is not None and not game_lines:
        lines += _stage_errors(source, cfg)
    if cfg is not None and not cfg.learning_agents:
        lines.append(f"{source}: agents: at least one agent must be of kind 'learner'")
    if not_finite:
        # pydantic may report the same keys again, less clearly
        prefixes = tuple(f"{source}: {key}: " for key in not_finite)
        lines = [line for line in lines if not line.startswith(prefixes)]
        lines = [
            f"{p}must be a finite number (got {v})"
            for p, v in zip(prefixes, not_finite.values(), strict=True)
        ] + lines
    if lines or cfg is None:
        raise ConfigError(lines)
    lines = _size_errors(source, cfg)
    if not lines:
        lines = _stage_size_errors(source, cfg)
    if lines:
        raise ConfigError(lines)
    return cfg


def _stage_errors(source: str, cfg: RunConfig) -> list[str]:
    """Each curriculum stage's game checked as the config's is, and that it keeps the sizes
    of the observation and of the action heads."""
    from casi_sim import GameConfig

    if cfg.curriculum is None:
        return []
    final = cfg.game()
    lines = []
    for i in range(len(cfg.curriculum.stages)):
        where = ("curriculum", "stages", i)
        try:
            game = GameConfig.model_validate(cfg.stage_game_dict(i), strict=True)
        except ValidationError as exc:
            lines += _error_lines(source, exc.errors(), where)
            continue
        for key in ("count", "values"):
            old, new = getattr(final.attrs, key), getattr(game.attrs, key)
            if old != new:
                lines.append(
                    f"{source}: {_dotted((*where, 'attrs', key))}: must be {old}, the config's "
                    f"attrs.{key} (got {new}): it would change obs_dim ({final.obs_dim} -> "
                    f"{game.obs_dim}) and the main action head ({final.n_main_actions} -> "
                    f"{game.n_main_actions}), and the model carries over from stage to "
                    "stage; a stage may set attrs.goal, attrs.direct, max_steps, init, "
                    "end_on_first_win and incentives"
                )
    return lines


def _stage_size_errors(source: str, cfg: RunConfig) -> list[str]:
    """The memory and scale limits of :func:`_size_errors` in each curriculum stage's game."""
    if cfg.curriculum is None:
        return []
    lines = []
    for i in range(len(cfg.curriculum.stages)):
        game = cfg.stage_game_dict(i)
        keys = {k: game[k] for k in GAME_KEYS if k in game}
        stage_cfg = cfg.model_copy(update={**keys, "curriculum": None})
        prefix = f"{source}: curriculum.stages.{i}: "
        found = _size_errors(source, stage_cfg)
        lines += [prefix + line.removeprefix(f"{source}: ") for line in found]
    return lines


def _non_finite(value: Any, key: str = "") -> list[tuple[str, float]]:
    """(dotted key, value) of every nan or inf anywhere in a parsed table."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [(key or "(top level)", value)]
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return []
    found = []
    for k, v in items:
        found += _non_finite(v, f"{key}.{k}" if key else str(k))
    return found


def memory_estimate(cfg: RunConfig) -> dict[str, tuple[int, str]]:
    """Bytes the run needs at least, by part, each with the keys that decide it.

    rollouts: learners x batch x max_steps x (obs_dim + main actions + 16) float32 (the
    buffer and its copy in Train), twice; evaluation: episodes x agents x (2 obs_dim + main
    actions + 6 agents x attrs.count) x 4 (observations, logits, the simulator's state); models: per
    learner, the parameters of its model (:func:`casi_proto.sizes.n_params`) x 4 copies
    (weights, gradients, two optimizer moments) x 4 bytes.
    """
    from casi_orchestrator.wire import head_sizes  # wire imports this module

    game = cfg.game()
    alg, na, c = cfg.algorithm, game.n_agents, game.attrs.count
    per_step = game.obs_dim + game.n_main_actions + 16
    learners = len(cfg.learning_agents)
    rollouts = 2 * 4 * learners * alg.batch * game.max_steps * per_step
    per_episode = na * (2 * game.obs_dim + game.n_main_actions + 6 * na * c)
    evaluation = 4 * cfg.eval.episodes * per_episode
    heads = head_sizes(game, alg.factored_main)
    slots = game.n_agents if alg.model == "slots" else None
    size = n_params(game.obs_dim, heads, alg.hidden_sizes, alg.recurrent, slots)
    models = 16 * learners * size
    return {
        "rollouts": (
            rollouts,
            "algorithm.batch x max_steps x obs_dim (attrs.count, attrs.values, agents)",
        ),
        "evaluation": (evaluation, "eval.episodes x agents x obs_dim (attrs.count, attrs.values)"),
        "models": (models, "algorithm.hidden_sizes x obs_dim"),
    }


def memory_budget() -> float:
    """The memory budget in GiB: ``CASI_MEMORY_GB``, or :data:`DEFAULT_MEMORY_GB`."""
    text = os.environ.get(MEMORY_ENV, "")
    if not text:
        return DEFAULT_MEMORY_GB
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError([f"{MEMORY_ENV}={text!r}: expected a positive number of GiB"])
    return value


def episode_return_bound(cfg: RunConfig) -> float:
    """The largest scaled return an episode can have (what the value loss squares)."""
    game = cfg.game()
    inc = game.incentives.model_dump()
    points = sum(v for k, v in inc.items() if k not in ("prosocial", "max_guesses_per_attr"))
    step = cfg.algorithm.reward_scale * points * (1.0 + inc["prosocial"]) + cfg.bonus.beta
    return float(game.max_steps * step)


def _size_errors(source: str, cfg: RunConfig) -> list[str]:
    lines = []
    budget = memory_budget()
    parts = memory_estimate(cfg)
    total = sum(n for n, _ in parts.values())
    if total > budget * 2**30:
        big = sorted(parts.items(), key=lambda item: -item[1][0])
        detail = ", ".join(f"{name} {n / 2**30:.3g} GiB ({keys})" for name, (n, keys) in big)
        lines.append(
            f"{source}: {big[0][1][1].split(' x ')[0]}: the run would need about "
            f"{total / 2**30:.3g} GiB, above the budget of {budget:g} GiB ({MEMORY_ENV}): {detail}"
        )
    bound = episode_return_bound(cfg)
    if not bound <= MAX_RETURN:
        lines.append(
            f"{source}: algorithm.reward_scale: an episode's scaled return could reach "
            f"{bound:.3g} (max_steps x (reward_scale x incentives x (1 + prosocial) + "
            f"bonus.beta)), above {MAX_RETURN:.0e}: its losses would overflow float32; "
            "lower reward_scale or the incentives"
        )
    return lines


def _game_errors(source: str, kinds: list[Any], game: dict[str, Any]) -> list[str]:
    from casi_sim import GameConfig

    valid_kinds = AgentKind.__args__  # type: ignore[attr-defined]
    if not 2 <= len(kinds) <= 16 or any(k not in valid_kinds for k in kinds):
        kinds = ["?"]  # the agents list is checked and reported by RunConfig
    try:
        GameConfig.model_validate({"agents": kinds, **game}, strict=True)
    except ValidationError as exc:
        return [line for line in _error_lines(source, exc.errors()) if ": agents" not in line]
    return []


def load_config(
    path: str | Path,
    *,
    overrides: dict[str, str] | None = None,
    seed: int | None = None,
    iterations: int | None = None,
    learners: dict[str, Any] | None = None,
    target_win_rate: float | None = None,
) -> RunConfig:
    """Reads and validates a TOML config; raises ConfigError listing every mistake.

    ``learners`` sets keys of the ``[learners]`` section (command-line options win);
    ``target_win_rate`` sets ``eval.target_win_rate``.
    """
    path = Path(path)
    source = str(path)
    data = _parse(path, source)
    if seed is not None:
        data["seed"] = seed
    if iterations is not None:
        data.setdefault("algorithm", {})
        if isinstance(data["algorithm"], dict):
            data["algorithm"]["iterations"] = iterations
    if target_win_rate is not None:
        data.setdefault("eval", {})
        if isinstance(data["eval"], dict):
            data["eval"]["target_win_rate"] = target_win_rate
    if learners:
        data.setdefault("learners", {})
        if isinstance(data["learners"], dict):
            data["learners"].update(learners)
    return validate_config(data, source, overrides)


def run_folder(runs_root: Path, name: str) -> Path:
    """``runs_root/name``, refused (ConfigError) unless it is a folder directly inside
    ``runs_root``, also after following links: nothing is written outside ``--out``."""
    folder = Path(runs_root) / name
    inside = folder.parent == Path(runs_root) and folder.name == name and name not in ("", "..")
    if inside and folder.exists():
        inside = folder.resolve().parent == Path(runs_root).resolve()
    if not inside:
        raise ConfigError(
            [
                f"name: the run folder {str(folder)!r} would not be a folder inside --out {str(runs_root)!r}"
            ]
        )
    return folder


def _parse(path: Path, source: str) -> dict[str, Any]:
    """The TOML table of ``path``; ConfigError if it is too big, not UTF-8 or not TOML."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read the file ({exc.strerror})"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError([f"{source}: larger than {MAX_FILE_BYTES} bytes: not a config"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [
                f"{source}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                f"{exc.start}); TOML files are UTF-8"
            ]
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: TOML syntax error: {exc}"]) from None
    except RecursionError:
        raise ConfigError([f"{source}: TOML nested too deeply"]) from None
