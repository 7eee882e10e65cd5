"""The Net contract at the level of numpy arrays.

Both the gRPC client (:mod:`casi_proto.client`) and an in-process learner
implement :class:`Net`, so the orchestrator can drive either. Configs stay
proto messages (``NetCfg``, ``OptimCfg``) so there is one definition of them.

A Net may also offer ``predict_async(obs)``, returning a :class:`Pending` at once (the gRPC
client does, over the Act stream): a caller can then have several Predicts in flight.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np
from casi.v1 import net_pb2


class Sequences(NamedTuple):
    """One Train batch; shapes as in ``casi.v1.Sequences``."""

    obs: np.ndarray  # float32 [B, T, obs_dim]
    actions: np.ndarray  # int64 [B, T, n_heads]
    logp_old: np.ndarray  # float32 [B, T]
    values_old: np.ndarray  # float32 [B, T]
    advantages: np.ndarray  # float32 [B, T]
    returns: np.ndarray  # float32 [B, T]
    mask: np.ndarray  # float32 [B, T]
    action_mask: np.ndarray | None = None  # float32 [B, T, sum(heads)]; None: all allowed


class Params(NamedTuple):
    """A learner's state: model tensors, optimizer tensors, version."""

    tensors: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    version: int


Prediction = tuple[np.ndarray, np.ndarray]
"""(logits float32 [B, sum(heads)], values float32 [B])."""


class Pending(Protocol):
    """A Predict in flight."""

    def result(self) -> Prediction:
        """Waits for the reply; errors are :class:`casi_proto.errors.NetError`."""
        ...


LOSS_FIELDS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "grad_norm")


class Net(Protocol):
    """What a learning agent offers. Errors are :class:`casi_proto.errors.NetError`."""

    def init(self, cfg: net_pb2.NetCfg) -> net_pb2.InitReply: ...

    def init_hidden(self, batch: int) -> None: ...

    def predict(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 [B, obs_dim] -> (logits float32 [B, sum(heads)], values float32 [B])."""
        ...

    def reset_optimizer(self, optim: net_pb2.OptimCfg) -> None: ...

    def train(self, step: int, batch: Sequences) -> dict[str, float]:
        """One update; returns the fields of ``LOSS_FIELDS``."""
        ...

    def get_params(self) -> Params: ...

    def set_params(self, params: Params) -> None: ...
