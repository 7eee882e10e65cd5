"""The losses a Train call can minimise, as small pure functions.

Every input is a flat tensor over N steps; ``mask`` (float [N], 1 where the agent acted)
weights every mean. Each function returns ``(total, stats)``: ``total`` is the scalar to
minimise and ``stats`` holds detached scalars ``policy_loss``, ``value_loss`` (before
``value_coef``, with the usual factor 1/2), ``entropy`` (mean joint entropy), ``approx_kl``
(mean of ``(ratio - 1) - log ratio``) and ``clip_fraction`` (PPO only; 0 for the others).

    total = policy_loss + value_coef * value_loss - entropy_coef * entropy
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

Stats = dict[str, torch.Tensor]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x where mask is 1 (0 when the mask is empty)."""
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def normalize_advantages(adv: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(adv - mean) / (std + eps) over the masked steps; std is the sample (n - 1) one."""
    n = mask.sum()
    mean = masked_mean(adv, mask)
    var = (((adv - mean) ** 2) * mask).sum() / (n - 1.0).clamp_min(1.0)
    return (adv - mean) / (var.sqrt() + eps)


def _stats(
    policy_loss: torch.Tensor,
    value_loss: torch.Tensor,
    entropy: torch.Tensor,
    log_ratio: torch.Tensor,
    mask: torch.Tensor,
    clip_fraction: torch.Tensor | None = None,
) -> Stats:
    with torch.no_grad():
        approx_kl = masked_mean(log_ratio.exp() - 1.0 - log_ratio, mask)
    zero = torch.zeros((), device=mask.device)
    return {
        "policy_loss": policy_loss.detach(),
        "value_loss": value_loss.detach(),
        "entropy": entropy.detach(),
        "approx_kl": approx_kl,
        "clip_fraction": zero if clip_fraction is None else clip_fraction,
    }


def _value_loss(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return 0.5 * masked_mean((values - returns) ** 2, mask)


def ppo_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    values_old: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip: float,
    value_coef: float,
    entropy_coef: float,
    clip_value: bool,
    normalize: bool = True,
) -> tuple[torch.Tensor, Stats]:
    """Clipped surrogate (Schulman et al. 2017) with optional value clipping."""
    if normalize:
        advantages = normalize_advantages(advantages, mask)
    log_ratio = logp - logp_old
    ratio = log_ratio.exp()
    surrogate = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip))
    policy_loss = masked_mean(surrogate, mask)
    if clip_value:
        clipped = values_old + (values - values_old).clamp(-clip, clip)
        worst = torch.max((values - returns) ** 2, (clipped - returns) ** 2)
        value_loss = 0.5 * masked_mean(worst, mask)
    else:
        value_loss = _value_loss(values, returns, mask)
    mean_entropy = masked_mean(entropy, mask)
    total = policy_loss + value_coef * value_loss - entropy_coef * mean_entropy
    with torch.no_grad():
        clip_fraction = masked_mean(((ratio - 1.0).abs() > clip).float(), mask)
    return total, _stats(policy_loss, value_loss, mean_entropy, log_ratio, mask, clip_fraction)


def a2c_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    *,
    value_coef: float,
    entropy_coef: float,
) -> tuple[torch.Tensor, Stats]:
    """Advantage actor-critic: -A log p with the advantages as given, plus the value loss."""
    policy_loss = -masked_mean(advantages * logp, mask)
    value_loss = _value_loss(values, returns, mask)
    mean_entropy = masked_mean(entropy, mask)
    total = policy_loss + value_coef * value_loss - entropy_coef * mean_entropy
    return total, _stats(policy_loss, value_loss, mean_entropy, logp - logp_old, mask)


def reinforce_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    *,
    entropy_coef: float,
) -> tuple[torch.Tensor, Stats]:
    """REINFORCE: -R log p; the critic is not trained (value_loss is reported as 0)."""
    policy_loss = -masked_mean(returns * logp, mask)
    mean_entropy = masked_mean(entropy, mask)
    total = policy_loss - entropy_coef * mean_entropy
    zero = torch.zeros((), device=mask.device)
    return total, _stats(policy_loss, zero, mean_entropy, logp - logp_old, mask)


def reinforce_baseline_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    *,
    value_coef: float,
    entropy_coef: float,
) -> tuple[torch.Tensor, Stats]:
    """REINFORCE with the value head as baseline: A2C with the advantages R - V.detach()."""
    advantages = returns - values.detach()
    return a2c_loss(
        logp, logp_old, advantages, values, returns, entropy, mask,
        value_coef=value_coef, entropy_coef=entropy_coef,
    )  # fmt: skip


def clip_grad_norm(params: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Scales the gradients to a global L2 norm of at most max_norm (<= 0: leaves them alone).

    Returns the norm before clipping.
    """
    limit = max_norm if max_norm > 0 else float("inf")
    grads = [p for p in params if p.grad is not None]
    return float(torch.nn.utils.clip_grad_norm_(grads, limit))
