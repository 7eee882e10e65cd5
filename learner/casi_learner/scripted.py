"""Scripted policies as a Net: the contract's proof that a learner is swappable.

``ScriptedNet("honest")`` always plays noop and answers every slot with complete
truth; ``liar`` with a specific lie, ``silent`` with ignore; ``random`` returns
all-zero logits (uniform sampling). numpy only: nothing here imports torch.

Requests are validated as the torch learner validates them (casi_proto.validate), including
what a recurrent NetCfg asks of Predict: InitHidden first, then exactly its batch of rows.
"""

from __future__ import annotations

import numpy as np
from casi.v1 import net_pb2
from casi_proto import PROTOCOL_VERSION
from casi_proto.api import LOSS_FIELDS, Params, Sequences
from casi_proto.errors import precondition
from casi_proto.validate import (
    check_game_heads,
    check_hidden_batch,
    check_net_cfg,
    check_optim_cfg,
    check_predict_obs,
    check_sequences,
    check_state,
    check_version,
    is_repeat,
)

from casi_learner import __version__

# The intention (casi.v1.Intention) every intention head of a policy picks; None: uniform.
INTENTION = {
    "honest": net_pb2.INTENTION_COMPLETE_TRUTH,
    "liar": net_pb2.INTENTION_SPECIFIC_LIE,
    "silent": net_pb2.INTENTION_IGNORE,
    "random": None,
}
POLICIES = tuple(INTENTION)
NOOP = 0
# Logit of the entries a scripted policy never picks: exp(-30) ~ 1e-13.
NEVER = -30.0


class ScriptedNet:
    """A fixed policy behind the Net interface; see the module docstring."""

    def __init__(self, policy: str) -> None:
        if policy not in INTENTION:
            raise ValueError(f"unknown scripted policy {policy!r}; choose one of {POLICIES}")
        self.policy = policy
        self._cfg: net_pb2.NetCfg | None = None
        self._row = np.zeros(0, np.float32)
        self._version = 0
        self._last: tuple[int, dict[str, float]] | None = None
        self._hidden_batch: int | None = None

    def _need_init(self, call: str) -> net_pb2.NetCfg:
        if self._cfg is None:
            raise precondition(f"{call} before Init: call Init with a NetCfg first")
        return self._cfg

    def init(self, cfg: net_pb2.NetCfg) -> net_pb2.InitReply:
        check_net_cfg(cfg)
        check_game_heads(cfg)  # a scripted policy knows only the game's own layout
        self._cfg = net_pb2.NetCfg()
        self._cfg.CopyFrom(cfg)
        self._row = self._logit_row(list(cfg.head_sizes))
        self._version, self._last = 0, None
        self._hidden_batch = None
        return net_pb2.InitReply(
            protocol_version=PROTOCOL_VERSION,
            implementation=f"casi-learner/scripted-{self.policy} {__version__}",
            device="cpu",
            n_params=0,
            action_mask=True,
        )

    def _logit_row(self, heads: list[int]) -> np.ndarray:
        row = np.zeros(sum(heads), np.float32)
        intention = INTENTION[self.policy]
        if intention is None:
            return row
        row[:] = NEVER
        row[NOOP] = 0.0
        starts = np.cumsum([0, *heads])[1:-1]
        row[starts + intention] = 0.0
        return row

    def init_hidden(self, batch: int) -> None:
        self._need_init("InitHidden")
        self._hidden_batch = check_hidden_batch(batch)

    def predict(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self._need_init("Predict")
        check_predict_obs(obs, cfg.obs_dim, cfg.recurrent, self._hidden_batch)
        b = obs.shape[0]
        return np.broadcast_to(self._row, (b, self._row.size)).copy(), np.zeros(b, np.float32)

    def reset_optimizer(self, optim: net_pb2.OptimCfg) -> None:
        self._need_init("ResetOptimizer")
        check_optim_cfg(optim)

    def train(self, step: int, batch: Sequences) -> dict[str, float]:
        cfg = self._need_init("Train")
        last = self._version if self._version > 0 else None  # as the torch learner counts
        if is_repeat(step, last, self._last is not None):
            assert self._last is not None
            return dict(self._last[1])
        check_sequences(batch, cfg.obs_dim, cfg.head_sizes)
        stats = dict.fromkeys(LOSS_FIELDS, 0.0)
        self._version, self._last = step, (step, stats)
        return dict(stats)

    def get_params(self) -> Params:
        self._need_init("GetParams")
        return Params(tensors={}, optimizer={}, version=self._version)

    def set_params(self, params: Params) -> None:
        self._need_init("SetParams")
        for kind in ("tensors", "optimizer"):
            check_state(f"{kind} (the {self.policy} policy has none)", getattr(params, kind), {})
        self._version, self._last = check_version(params.version), None
