"""Checks of the contract's config messages, shared by every Python implementation of Net.

Each raises :class:`casi_proto.errors.NetError`: FAILED_PRECONDITION for a protocol mismatch,
INVALID_ARGUMENT naming the first bad field, what was expected and what was got.
"""

from __future__ import annotations

import math

from casi.v1 import net_pb2

from casi_proto import PROTOCOL_VERSION
from casi_proto.errors import invalid, precondition

N_INTENTIONS = 5
LOSS_KINDS = (
    net_pb2.LOSS_PPO,
    net_pb2.LOSS_A2C,
    net_pb2.LOSS_REINFORCE,
    net_pb2.LOSS_REINFORCE_BASELINE,
)
OPTIM_KINDS = (net_pb2.OPTIM_ADAM, net_pb2.OPTIM_RMSPROP, net_pb2.OPTIM_SGD)
ACTIVATIONS = (net_pb2.ACTIVATION_UNSPECIFIED, net_pb2.ACTIVATION_TANH, net_pb2.ACTIVATION_RELU)


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
    if len(heads) < 2 or heads[0] < 1 or any(h != N_INTENTIONS for h in heads[1:]):
        raise invalid(
            "NetCfg.head_sizes: expected [A, 5, 5, ...] (the main head, then one head of 5 "
            f"intentions per agent slot), got {heads}"
        )
    if any(h <= 0 for h in cfg.hidden_sizes):
        raise invalid(f"NetCfg.hidden_sizes: expected sizes > 0, got {list(cfg.hidden_sizes)}")
    if cfg.activation not in ACTIVATIONS:
        raise invalid(f"NetCfg.activation: expected TANH or RELU, got {cfg.activation}")
    if cfg.loss not in LOSS_KINDS:
        names = ", ".join(net_pb2.LossKind.Name(k) for k in LOSS_KINDS)
        raise invalid(f"NetCfg.loss: expected one of {names}, got {cfg.loss}")
    check_optim_cfg(cfg.optim, "NetCfg.optim")
    _check_coefficients(cfg)


def check_optim_cfg(optim: net_pb2.OptimCfg, prefix: str = "OptimCfg") -> None:
    """Everything the contract says of an OptimCfg."""
    if optim.kind not in OPTIM_KINDS:
        names = ", ".join(net_pb2.OptimKind.Name(k) for k in OPTIM_KINDS)
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
