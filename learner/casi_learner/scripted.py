"""Scripted policies as a Net: the contract's proof that a learner is swappable.

``ScriptedNet("honest")`` always plays noop and answers every slot with complete
truth; ``liar`` with a specific lie, ``silent`` with ignore; ``random`` returns
all-zero logits (uniform sampling). numpy only: nothing here imports torch.
"""

from __future__ import annotations

import numpy as np
from casi.v1 import net_pb2
from casi_proto import PROTOCOL_VERSION
from casi_proto.api import LOSS_FIELDS, Params, Sequences
from casi_proto.errors import invalid, precondition
from casi_proto.validate import check_net_cfg, check_optim_cfg

from casi_learner import __version__

# Intention per policy (casi_sim.actions: 0 ignore, 1 specific lie, 4 complete truth).
INTENTION = {"honest": 4, "liar": 1, "silent": 0, "random": None}
POLICIES = tuple(INTENTION)
NOOP = 0
# Logit of the entries a scripted policy never picks: exp(-30) ~ 1e-13.
NEVER = -30.0


def _check_array(arr: np.ndarray, field: str, dtype: type, shape: tuple[int | None, ...]) -> None:
    ok = arr.ndim == len(shape) and all(
        w is None or w == n for w, n in zip(shape, arr.shape, strict=True)
    )
    if arr.dtype != np.dtype(dtype) or not ok:
        want = "[" + ", ".join("*" if w is None else str(w) for w in shape) + "]"
        got = "[" + ", ".join(str(n) for n in arr.shape) + "]"
        raise invalid(f"{field}: got {arr.dtype} {got}, expected {np.dtype(dtype)} {want}")


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

    def _need_init(self, call: str) -> net_pb2.NetCfg:
        if self._cfg is None:
            raise precondition(f"{call} before Init: call Init with a NetCfg first")
        return self._cfg

    def init(self, cfg: net_pb2.NetCfg) -> net_pb2.InitReply:
        check_net_cfg(cfg)
        self._cfg = net_pb2.NetCfg()
        self._cfg.CopyFrom(cfg)
        self._row = self._logit_row(list(cfg.head_sizes))
        self._version, self._last = 0, None
        return net_pb2.InitReply(
            protocol_version=PROTOCOL_VERSION,
            implementation=f"casi-learner/scripted-{self.policy} {__version__}",
            device="cpu",
            n_params=0,
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
        if batch < 1:
            raise invalid(f"HiddenCfg.batch must be >= 1, got {batch}")

    def predict(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self._need_init("Predict")
        _check_array(obs, "obs", np.float32, (None, cfg.obs_dim))
        b = obs.shape[0]
        return np.broadcast_to(self._row, (b, self._row.size)).copy(), np.zeros(b, np.float32)

    def reset_optimizer(self, optim: net_pb2.OptimCfg) -> None:
        self._need_init("ResetOptimizer")
        check_optim_cfg(optim)

    def train(self, step: int, batch: Sequences) -> dict[str, float]:
        cfg = self._need_init("Train")
        if self._last is not None and step == self._last[0]:
            return dict(self._last[1])
        if step <= self._version:
            raise precondition(
                f"Train step {step} is not after the last applied step {self._version}; "
                "steps must increase (a retry repeats the last step exactly)"
            )
        self._check_sequences(cfg, batch)
        stats = dict.fromkeys(LOSS_FIELDS, 0.0)
        self._version, self._last = step, (step, stats)
        return dict(stats)

    def _check_sequences(self, cfg: net_pb2.NetCfg, batch: Sequences) -> None:
        b, t = batch.obs.shape[:2] if batch.obs.ndim >= 2 else (None, None)
        _check_array(batch.obs, "obs", np.float32, (b, t, cfg.obs_dim))
        heads = np.asarray(cfg.head_sizes, np.int64)
        _check_array(batch.actions, "actions", np.int64, (b, t, heads.size))
        for name in Sequences._fields[2:]:
            arr = getattr(batch, name)
            _check_array(arr, name, np.float32, (b, t))
            if not np.isfinite(arr).all():
                raise invalid(f"{name}: contains NaN or infinity")
        if not np.isfinite(batch.obs).all():
            raise invalid("obs: contains NaN or infinity")
        bad = (batch.actions < 0) | (batch.actions >= heads)
        if bad.any():
            i = tuple(int(n) for n in np.argwhere(bad)[0])
            raise invalid(
                f"actions{list(i)} = {int(batch.actions[i])} is outside head {i[2]} "
                f"of size {int(heads[i[2]])}"
            )

    def get_params(self) -> Params:
        self._need_init("GetParams")
        return Params(tensors={}, optimizer={}, version=self._version)

    def set_params(self, params: Params) -> None:
        self._need_init("SetParams")
        for kind, arrays in (("tensors", params.tensors), ("optimizer", params.optimizer)):
            if arrays:
                raise invalid(
                    f"Params.{kind}: unexpected keys {sorted(arrays)[:5]}; the scripted policy "
                    f"{self.policy!r} has no parameters (expected an empty map)"
                )
        if params.version < 0:
            raise invalid(f"Params.version must be >= 0, got {params.version}")
        self._version, self._last = params.version, None
