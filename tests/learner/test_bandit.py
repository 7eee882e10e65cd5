"""A real `casi-learner --policy torch` learns a contextual bandit through NetClient.

obs = [bit, 1]; reward 1 when the main head's action equals the bit; heads [2, 5].
The test samples actions from the logits itself, as the orchestrator does.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from casi_proto.api import Sequences
from casi_proto.client import NetClient
from casi_proto.compliance import NetContract
from casi_proto.heads import log_softmax

from ..conftest import LearnerProcess

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[2]
HEADS = (2, 5)


def sample(rng: np.random.Generator, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-head categorical samples [B, n_heads] and their joint log-probability [B]."""
    actions, logp, start = [], np.zeros(len(logits)), 0
    for size in HEADS:
        lp = log_softmax(logits[:, start : start + size].astype(np.float64))
        u = rng.random((len(lp), 1))
        a = (np.exp(lp).cumsum(axis=1) < u).sum(axis=1).clip(0, size - 1)
        actions.append(a)
        logp += lp[np.arange(len(lp)), a]
        start += size
    return np.stack(actions, axis=1).astype(np.int64), logp.astype(np.float32)


def greedy_accuracy(client: NetClient) -> float:
    obs = np.array([[0, 1], [1, 1]], np.float32)
    logits, _ = client.predict(obs)
    return float((logits[:, :2].argmax(axis=1) == [0, 1]).mean())


@pytest.mark.expensive
def test_torch_learner_learns_a_contextual_bandit_over_grpc(
    learners: Callable[..., LearnerProcess],
) -> None:
    learner = learners("--policy", "torch", "--device", "cpu", "--port", "0")
    assert learner.line.endswith(" policy=torch device=cpu\n"), learner.line
    address = learner.address
    rng = np.random.default_rng(0)
    cfg = NetContract().make_cfg(obs_dim=2, head_sizes=list(HEADS), epochs=4, minibatches=4)
    cfg.optim.lr = 3e-3
    accuracy, t0, step, perfect = 0.0, time.monotonic(), 0, 0
    try:
        with NetClient(address, name="bandit") as client:
            client.wait_ready(30)
            client.init(cfg)
            while time.monotonic() - t0 < 20.0:
                bit = rng.integers(0, 2, 256)
                obs = np.stack([bit, np.ones(256)], axis=1).astype(np.float32)
                logits, values = client.predict(obs)
                actions, logp = sample(rng, logits)
                reward = (actions[:, 0] == bit).astype(np.float32)
                col = lambda x: np.asarray(x, np.float32).reshape(256, 1)  # noqa: E731
                step += 1
                client.train(
                    step,
                    Sequences(
                        obs=obs.reshape(256, 1, 2),
                        actions=actions.reshape(256, 1, 2),
                        logp_old=col(logp),
                        values_old=col(values),
                        advantages=col(reward - values),
                        returns=col(reward),
                        mask=col(np.ones(256)),
                    ),
                )
                accuracy = greedy_accuracy(client)
                perfect = perfect + 1 if accuracy == 1.0 else 0
                if perfect == 3:
                    break
    finally:
        code = learner.kill(signal.SIGTERM)
    elapsed = time.monotonic() - t0
    assert accuracy > 0.95, f"greedy accuracy {accuracy} after {step} updates, {elapsed:.1f} s"
    assert code == 0
