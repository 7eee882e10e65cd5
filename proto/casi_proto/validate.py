"""Checks of Net requests, shared by every Python implementation of Net.

Each raises :class:`casi_proto.errors.NetError`: FAILED_PRECONDITION for a protocol mismatch
or a Train step out of order, INVALID_ARGUMENT for the first bad field, in the words
``<field>: expected <what the contract needs>, got <what was received>``.

Shapes are written ``[B, T, 10]``: an int is an exact size, a name (``"B"``) any size >= 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from casi.v1 import net_pb2

from casi_proto import PROTOCOL_VERSION
from casi_proto.api import Sequences
from casi_proto.errors import invalid, precondition
from casi_proto.heads import head_slices
from casi_proto.names import ACTIVATION_NAMES, LOSSES, N_INTENTIONS, OPTIMIZERS
from casi_proto.sizes import game_head_sizes, game_obs_dim

Shape = Sequence[int | str]
SEQUENCE_FLOATS = ("logp_old", "values_old", "advantages", "returns", "mask")
MAX_ROWS = 1_000_000
"""The most rows a Predict, and the batch an InitHidden, may have (parallel episodes x agents
of one learner; the experiments use a few thousand)."""

# -- config messages ------------------------------------------------------------------------


def check_net_cfg(cfg: net_pb2.NetCfg) -> None:
    """Everything the contract says of a NetCfg, whatever the model behind it."""
    if cfg.protocol_version != PROTOCOL_VERSION:
        raise precondition(
            f"NetCfg.protocol_version: this learner speaks casi.v1 protocol {PROTOCOL_VERSION}, "
            f"the caller sent {cfg.protocol_version}; install matching casi-proto versions"
        )
    if cfg.obs_dim <= 0:
        raise invalid(f"NetCfg.obs_dim: expected > 0, got {cfg.obs_dim}")
    heads = list(cfg.head_sizes)
    if not heads or any(h < 1 for h in heads):
        raise invalid(
            f"NetCfg.head_sizes: expected one or more heads of >= 1 actions each (the game's "
            f"[A, {N_INTENTIONS}, {N_INTENTIONS}, ...], or a factoring of it), got {heads}"
        )
    if any(h <= 0 for h in cfg.hidden_sizes):
        raise invalid(f"NetCfg.hidden_sizes: expected sizes > 0, got {list(cfg.hidden_sizes)}")
    if cfg.activation not in ACTIVATION_NAMES:
        raise invalid(f"NetCfg.activation: expected TANH or RELU, got {cfg.activation}")
    if cfg.loss not in LOSSES.values():
        names = ", ".join(net_pb2.LossKind.Name(k) for k in LOSSES.values())
        raise invalid(f"NetCfg.loss: expected one of {names}, got {cfg.loss}")
    check_optim_cfg(cfg.optim, "NetCfg.optim")
    _check_coefficients(cfg)


def check_game_heads(cfg: net_pb2.NetCfg) -> None:
    """``head_sizes`` in the game's own layout, ``[A, 5, 5, ...]``: the main head, then one
    head of 5 intentions per agent slot (for a policy that reads what its heads mean)."""
    heads = list(cfg.head_sizes)
    if len(heads) < 2 or heads[0] < 1 or any(h != N_INTENTIONS for h in heads[1:]):
        raise invalid(
            f"NetCfg.head_sizes: expected [A, {N_INTENTIONS}, {N_INTENTIONS}, ...] (the main "
            f"head, then one head of {N_INTENTIONS} intentions per agent slot), got {heads}"
        )


def check_slots_cfg(cfg: net_pb2.NetCfg) -> None:
    """A NetCfg asking for MODEL_SLOTS: a game's sizes in ``game``, the observation and heads
    those sizes give (SPEC 2.3, 2.5), and no LSTM."""
    g = cfg.game
    shape = f"NetCfg.game {g.attrs}/{g.values}/{g.agents} (attrs/values/agents)"
    if g.attrs < 1 or g.values < 2 or g.agents < 1:
        raise invalid(
            f"NetCfg.game: MODEL_SLOTS expected attrs >= 1, values >= 2 and agents >= 1, got "
            f"attrs {g.attrs}, values {g.values}, agents {g.agents}"
        )
    obs_dim = game_obs_dim(g.attrs, g.values, g.agents)
    if cfg.obs_dim != obs_dim:
        raise invalid(
            f"NetCfg.obs_dim: MODEL_SLOTS with {shape} expected the game's {obs_dim}, "
            f"got {cfg.obs_dim}"
        )
    heads = game_head_sizes(g.attrs, g.values, g.agents)
    if list(cfg.head_sizes) != heads:
        raise invalid(
            f"NetCfg.head_sizes: MODEL_SLOTS with {shape} expected the game's {heads}, "
            f"got {list(cfg.head_sizes)}"
        )
    if cfg.recurrent:
        raise invalid("NetCfg.recurrent: MODEL_SLOTS is feed-forward, expected false")


def check_optim_cfg(optim: net_pb2.OptimCfg, prefix: str = "OptimCfg") -> None:
    """Everything the contract says of an OptimCfg."""
    if optim.kind not in OPTIMIZERS.values():
        names = ", ".join(net_pb2.OptimKind.Name(k) for k in OPTIMIZERS.values())
        raise invalid(f"{prefix}.kind: expected one of {names}, got {optim.kind}")
    _positive(f"{prefix}.lr", optim.lr)
    if optim.kind in (net_pb2.OPTIM_ADAM, net_pb2.OPTIM_RMSPROP):
        _positive(f"{prefix}.eps", optim.eps)
    if not (math.isfinite(optim.momentum) and optim.momentum >= 0):
        raise invalid(f"{prefix}.momentum: expected a finite number >= 0, got {optim.momentum}")


def _check_coefficients(cfg: net_pb2.NetCfg) -> None:
    for field in ("epochs", "minibatches"):
        if getattr(cfg, field) < 1:
            raise invalid(f"NetCfg.{field}: expected >= 1, got {getattr(cfg, field)}")
    for field in ("value_coef", "entropy_coef", "max_grad_norm", "clip"):
        if not math.isfinite(getattr(cfg, field)):
            raise invalid(f"NetCfg.{field}: expected a finite number, got {getattr(cfg, field)}")
    if cfg.loss == net_pb2.LOSS_PPO:
        _positive("NetCfg.clip", cfg.clip)
    if cfg.value_coef < 0:
        raise invalid(f"NetCfg.value_coef: expected >= 0, got {cfg.value_coef}")


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise invalid(f"{name}: expected a finite number > 0, got {value}")


def check_hidden_batch(batch: int) -> int:
    """HiddenCfg.batch, which must be in 1..MAX_ROWS."""
    if int(batch) < 1:
        raise invalid(f"HiddenCfg.batch: expected >= 1, got {batch}")
    if int(batch) > MAX_ROWS:
        raise invalid(f"HiddenCfg.batch: expected at most {MAX_ROWS} (the row limit), got {batch}")
    return int(batch)


# -- arrays ---------------------------------------------------------------------------------


def describe(x: Any) -> str:
    """``float32 [4, 19]`` for an array, the type's name for anything else."""
    if not isinstance(x, np.ndarray):
        return type(x).__name__
    return f"{x.dtype} [{', '.join(str(d) for d in x.shape)}]"


def check_array(field: str, x: Any, dtype: npt.DTypeLike, shape: Shape) -> np.ndarray:
    """``x`` as an array of this dtype and shape (a named size matches any size >= 1)."""
    if isinstance(x, np.generic):  # a numpy scalar stands for a 0-d array
        x = np.asarray(x)
    fits = (
        isinstance(x, np.ndarray)
        and x.dtype == dtype
        and x.ndim == len(shape)
        and all(
            d == s if isinstance(s, int) else d >= 1 for d, s in zip(x.shape, shape, strict=True)
        )
    )
    if not fits:
        want = f"{np.dtype(dtype)} [{', '.join(str(s) for s in shape)}]"
        raise invalid(f"{field}: expected {want}, got {describe(x)}")
    return x  # type: ignore[no-any-return]


def check_finite(field: str, x: np.ndarray) -> None:
    if not np.isfinite(x).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise invalid(f"{field}: expected finite values, got {x[where]} at index {list(where)}")


def check_obs(obs: Any, obs_dim: int, rows: int | str = "B") -> np.ndarray:
    """Predict's observations: finite float32 ``[rows, obs_dim]``, at most MAX_ROWS rows."""
    obs = check_array("obs", obs, np.float32, (rows, obs_dim))
    if obs.shape[0] > MAX_ROWS:
        raise invalid(f"obs: expected at most {MAX_ROWS} rows (the row limit), got {obs.shape[0]}")
    check_finite("obs", obs)
    return obs


def check_predict_obs(
    obs: Any, obs_dim: int, recurrent: bool, hidden_batch: int | None
) -> np.ndarray:
    """Predict's observations; a recurrent model needs InitHidden first, then exactly its
    batch of rows."""
    rows: int | str = "B"
    if recurrent:
        if hidden_batch is None:
            raise precondition("recurrent model: call InitHidden(batch) before Predict")
        rows = hidden_batch
    return check_obs(obs, obs_dim, rows)


def check_sequences(batch: Sequences, obs_dim: int, head_sizes: Sequence[int]) -> Sequences:
    """Train's batch: shapes and dtypes, finite values, actions inside their heads, a 0/1 mask."""
    heads = np.asarray(head_sizes)
    obs = check_array("obs", batch.obs, np.float32, ("B", "T", obs_dim))
    check_finite("obs", obs)
    b, t = obs.shape[:2]
    actions = check_array("actions", batch.actions, np.int64, (b, t, len(heads)))
    bad = (actions < 0) | (actions >= heads)
    if bad.any():
        i, j, h = (int(v) for v in np.argwhere(bad)[0])
        raise invalid(
            f"actions: head {h} has {heads[h]} actions (0..{heads[h] - 1}), "
            f"got {actions[i, j, h]} at [{i}, {j}, {h}]"
        )
    floats = {}
    for name in SEQUENCE_FLOATS:
        floats[name] = check_array(name, getattr(batch, name), np.float32, (b, t))
        check_finite(name, floats[name])
    check_zero_one("mask", floats["mask"])
    allowed = batch.action_mask
    if allowed is not None:
        allowed = check_action_mask(allowed, actions, floats["mask"], head_sizes)
    return Sequences(obs, actions, **floats, action_mask=allowed)


def check_zero_one(field: str, x: np.ndarray) -> None:
    odd = (x != 0.0) & (x != 1.0)
    if odd.any():
        where = [int(i) for i in np.argwhere(odd)[0]]
        raise invalid(f"{field}: expected only 0 and 1, got {x[tuple(where)]} at index {where}")


def check_action_mask(
    allowed: Any, actions: np.ndarray, mask: np.ndarray, head_sizes: Sequence[int]
) -> np.ndarray:
    """Train's optional action mask: 0/1 float32 ``[B, T, sum(heads)]``; at every acted step
    each head allows some action, and the sampled one."""
    b, t = mask.shape
    allowed = check_array("action_mask", allowed, np.float32, (b, t, int(sum(head_sizes))))
    check_zero_one("action_mask", allowed)
    acted = mask > 0
    for h, cols in enumerate(head_slices(head_sizes)):
        head = allowed[:, :, cols]
        empty = acted & (head.sum(axis=-1) == 0)
        if empty.any():
            i, j = (int(v) for v in np.argwhere(empty)[0])
            raise invalid(f"action_mask: head {h} allows no action at acted step [{i}, {j}]")
        taken = np.take_along_axis(head, actions[:, :, h : h + 1], axis=-1)[..., 0]
        masked = acted & (taken == 0)
        if masked.any():
            i, j = (int(v) for v in np.argwhere(masked)[0])
            raise invalid(
                f"action_mask: the sampled action {actions[i, j, h]} of head {h} at [{i}, {j}] "
                "is masked out"
            )
    return allowed


# -- Params and steps -----------------------------------------------------------------------


def check_state(
    what: str, given: Any, expected: Mapping[str, tuple[tuple[int, ...], npt.DTypeLike]]
) -> dict[str, np.ndarray]:
    """A map of name -> array with exactly the expected keys, shapes, dtypes, finite values."""
    if not isinstance(given, Mapping):
        raise invalid(f"{what}: expected a map of name -> array, got {type(given).__name__}")
    missing = sorted(set(expected) - set(given))
    extra = sorted(str(k) for k in set(given) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing key(s) {', '.join(repr(k) for k in missing[:5])}")
        if extra:
            parts.append(f"unexpected key(s) {', '.join(repr(k) for k in extra[:5])}")
        raise invalid(f"{what}: {'; '.join(parts)} (expected {len(expected)} keys)")
    out = {}
    for key, (shape, dtype) in expected.items():
        name = f"{what}[{key!r}]"
        out[key] = check_array(name, given[key], dtype, shape)
        check_finite(name, out[key])
    return out


def check_version(version: Any) -> int:
    """Params.version, an integer >= 0."""
    if not isinstance(version, int | np.integer) or version < 0:
        raise invalid(f"Params.version: expected an integer >= 0, got {version!r}")
    return int(version)


def is_repeat(step: int, last: int | None, loss_known: bool) -> bool:
    """Whether a Train at ``step`` repeats the last applied step ``last`` (None: none yet).

    A repeat is answered with the stored Loss; a step before ``last``, or a repeat whose
    Loss is not known (``last`` came from SetParams), is FAILED_PRECONDITION.
    """
    if last is None or step > last:
        return False
    if step < last:
        raise precondition(
            f"Sequences.step: expected a step after the last applied step {last} "
            f"(or that step again, a retry), got step {step}; steps must increase"
        )
    if not loss_known:
        raise precondition(
            f"Sequences.step: expected a step after {last}, got step {step}, which the "
            "current parameters already reflect (their version) but whose loss is not known "
            "here; send the next step"
        )
    return True
