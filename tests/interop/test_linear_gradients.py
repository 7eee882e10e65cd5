"""The Node learner's hand-written gradients against autograd: one Train of the linear
actor-critic (every loss, every optimizer) gives the parameters and the Loss that the learner's
own torch losses and torch.optim give for the same linear model and batch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from casi.v1 import net_pb2
from casi_learner import losses
from casi_learner.model import joint_entropy, joint_log_prob
from casi_proto.api import Params, Sequences
from casi_proto.client import NetClient
from casi_proto.compliance import NetContract

from .conftest import NodeNet

pytestmark = pytest.mark.expensive  # torch, and a torch update per case
CONTRACT = NetContract()
HEADS = list(CONTRACT.head_sizes)
LOSSES = {
    "ppo": net_pb2.LOSS_PPO,
    "ppo_clip_value": net_pb2.LOSS_PPO,
    "a2c": net_pb2.LOSS_A2C,
    "reinforce": net_pb2.LOSS_REINFORCE,
    "reinforce_baseline": net_pb2.LOSS_REINFORCE_BASELINE,
}
OPTIMS = {
    "adam": net_pb2.OptimCfg(kind=net_pb2.OPTIM_ADAM, lr=1e-2, eps=1e-5),
    "rmsprop": net_pb2.OptimCfg(kind=net_pb2.OPTIM_RMSPROP, lr=1e-2, eps=1e-5, momentum=0.5),
    "sgd": net_pb2.OptimCfg(kind=net_pb2.OPTIM_SGD, lr=0.1, momentum=0.9),
}


def skewed(batch: Sequences, seed: int) -> Sequences:
    """The batch with old log-probs and values moved (PPO clips some steps) and a few steps
    not acted."""
    rng = np.random.default_rng(seed)
    mask = batch.mask.copy()
    mask[0, -1] = mask[2, 0] = 0.0
    noise = rng.uniform(-0.5, 0.5, batch.mask.shape).astype(np.float32)
    return batch._replace(
        logp_old=batch.logp_old + noise,
        values_old=batch.values_old - noise,
        mask=mask,
    )


def torch_update(
    cfg: net_pb2.NetCfg, start: Params, batch: Sequences
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """One update of the same linear model by autograd and torch.optim, in float64."""
    p = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for k, v in start.tensors.items()
    }
    rows = batch.mask.reshape(-1) > 0

    def flat(x: np.ndarray) -> torch.Tensor:
        return torch.tensor(x.reshape(-1, *x.shape[2:])[rows], dtype=torch.float64)

    obs, mask = flat(batch.obs), flat(batch.mask)
    actions = torch.tensor(batch.actions.reshape(-1, len(HEADS))[rows])
    logits = obs @ p["policy.weight"].T + p["policy.bias"]
    if batch.action_mask is not None:  # as casi_learner.torch_net trains the masked policy
        allowed = torch.tensor(batch.action_mask.reshape(-1, sum(HEADS))[rows] > 0)
        logits = logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
    values = (obs @ p["value.weight"].T + p["value.bias"]).reshape(-1)
    logp, entropy = joint_log_prob(logits, actions, HEADS), joint_entropy(logits, HEADS)
    old, returns, adv = flat(batch.logp_old), flat(batch.returns), flat(batch.advantages)
    coef = {"value_coef": cfg.value_coef, "entropy_coef": cfg.entropy_coef}
    if cfg.loss == net_pb2.LOSS_PPO:
        total, stats = losses.ppo_loss(
            logp, old, adv, values, flat(batch.values_old), returns, entropy, mask,
            clip=cfg.clip, clip_value=cfg.clip_value, **coef,
        )  # fmt: skip
    elif cfg.loss == net_pb2.LOSS_A2C:
        total, stats = losses.a2c_loss(logp, old, adv, values, returns, entropy, mask, **coef)
    elif cfg.loss == net_pb2.LOSS_REINFORCE:
        ent = cfg.entropy_coef
        total, stats = losses.reinforce_loss(logp, old, returns, entropy, mask, entropy_coef=ent)
    else:
        total, stats = losses.reinforce_baseline_loss(
            logp, old, values, returns, entropy, mask, **coef
        )
    params = list(p.values())
    total.backward()
    for x in params:
        if x.grad is None:
            x.grad = torch.zeros_like(x)
    norm = losses.clip_grad_norm(params, cfg.max_grad_norm)
    o = cfg.optim
    if o.kind == net_pb2.OPTIM_ADAM:
        optim: torch.optim.Optimizer = torch.optim.Adam(params, lr=o.lr, eps=o.eps)
    elif o.kind == net_pb2.OPTIM_RMSPROP:
        optim = torch.optim.RMSprop(params, lr=o.lr, eps=o.eps, momentum=o.momentum)
    else:
        optim = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum)
    optim.step()
    out = {k: v.detach().numpy() for k, v in p.items()}
    return out, {**{k: float(v) for k, v in stats.items()}, "grad_norm": norm}


@pytest.mark.parametrize("optim", sorted(OPTIMS))
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_one_train_matches_autograd(
    node_net: Callable[..., NodeNet], loss: str, optim: str
) -> None:
    cfg = CONTRACT.make_cfg(
        loss=LOSSES[loss], epochs=1, minibatches=1, clip_value=loss == "ppo_clip_value"
    )
    cfg.optim.CopyFrom(OPTIMS[optim])
    with NetClient(node_net("--policy", "linear").address) as client:
        client.init(cfg)
        start = client.get_params()
        batch = skewed(CONTRACT.make_sequences(client, b=5, t=4), seed=1)
        stats = client.train(1, batch)
        after = client.get_params()
    want, want_stats = torch_update(cfg, start, batch)
    assert sorted(after.tensors) == sorted(want)
    for name, x in want.items():
        np.testing.assert_allclose(after.tensors[name], x, rtol=1e-4, atol=2e-6, err_msg=name)
    assert stats == pytest.approx(want_stats, rel=1e-4, abs=1e-6)
    assert after.optimizer, "the optimizer state is empty after a Train"


def with_action_mask(batch: Sequences, seed: int) -> Sequences:
    """The batch with about half of every head's actions masked out, never the sampled one."""
    rng = np.random.default_rng(seed)
    allowed = (rng.random((*batch.mask.shape, sum(HEADS))) < 0.5).astype(np.float32)
    start = 0
    for h, size in enumerate(HEADS):
        np.put_along_axis(allowed[..., start : start + size], batch.actions[..., h : h + 1], 1, -1)
        start += size
    return batch._replace(action_mask=allowed)


@pytest.mark.parametrize("loss", ["ppo", "a2c"])
def test_one_train_with_an_action_mask_matches_autograd(
    node_net: Callable[..., NodeNet], loss: str
) -> None:
    cfg = CONTRACT.make_cfg(loss=LOSSES[loss], epochs=1, minibatches=1)
    with NetClient(node_net("--policy", "linear").address) as client:
        assert client.init(cfg).action_mask
        start = client.get_params()
        batch = skewed(CONTRACT.make_sequences(client, b=5, t=4), seed=2)
        batch = with_action_mask(batch, seed=3)
        stats = client.train(1, batch)
        after = client.get_params()
    want, want_stats = torch_update(cfg, start, batch)
    for name, x in want.items():
        np.testing.assert_allclose(after.tensors[name], x, rtol=1e-4, atol=2e-6, err_msg=name)
    assert stats == pytest.approx(want_stats, rel=1e-4, abs=1e-6)
