"""Generalised advantage estimation (Schulman et al. 2016) over masked steps.

``mask[b, t] == 1`` where the agent acted at step ``t`` of episode ``b``. A step
bootstraps from the next step's value only when the agent acts there too; after
its last acted step (or a step it did not act on) the continuation value is 0,
so nothing flows back across a gap. Episodes end at ``T``: there is no value
beyond the last column.

    delta[t] = r[t] + gamma * m[t+1] * v[t+1] - v[t]
    adv[t]   = m[t] * (delta[t] + gamma * lam * m[t+1] * adv[t+1])
    ret[t]   = m[t] * (adv[t] + v[t])
"""

from __future__ import annotations

import numpy as np


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    mask: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns, float32 [B, T], both 0 where ``mask`` is 0."""
    r, v, m = _check(rewards, values, mask, gamma, lam)
    n_steps = r.shape[1]
    adv = np.zeros_like(r)
    next_value = np.zeros(r.shape[0])
    next_adv = np.zeros(r.shape[0])
    next_mask = np.zeros(r.shape[0])
    for t in reversed(range(n_steps)):
        delta = r[:, t] + gamma * next_mask * next_value - v[:, t]
        adv[:, t] = m[:, t] * (delta + gamma * lam * next_mask * next_adv)
        next_value, next_adv, next_mask = v[:, t], adv[:, t], m[:, t]
    returns = m * (adv + v)
    return adv.astype(np.float32), returns.astype(np.float32)


def _check(
    rewards: np.ndarray, values: np.ndarray, mask: np.ndarray, gamma: float, lam: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = {"rewards": rewards, "values": values, "mask": mask}
    for name, a in arrays.items():
        if np.ndim(a) != 2:
            raise ValueError(f"gae: {name} must be 2-D [B, T], got shape {np.shape(a)}")
        if np.shape(a) != np.shape(rewards):
            raise ValueError(
                f"gae: {name} has shape {np.shape(a)}, expected {np.shape(rewards)} (as rewards)"
            )
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gae: gamma must be in [0, 1], got {gamma}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"gae: lam must be in [0, 1], got {lam}")
    m = np.asarray(mask, dtype=np.float64)
    if not np.isin(m, (0.0, 1.0)).all():
        raise ValueError("gae: mask must hold only 0 and 1")
    return np.asarray(rewards, np.float64), np.asarray(values, np.float64), m
