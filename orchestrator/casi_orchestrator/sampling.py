"""Actions from logits: independent categoricals per head, and derived random streams.

Every random stream of a run is derived from ``(seed, trial, purpose, iteration)`` with
:func:`derive_seed`, so an iteration is a pure function of those numbers and of the learners'
parameters: a resumed run draws exactly what an uninterrupted one would have drawn.
"""

from __future__ import annotations

import numpy as np
from casi_proto.heads import head_slices, log_softmax

from casi_orchestrator.factored import FactoredHeads, relevant

# purposes of derived streams (never renumber: resumed runs depend on them)
NET_INIT = 1
ROLLOUT_SIM = 2
ROLLOUT_ACTIONS = 3
EVAL_SIM = 4
EVAL_ACTIONS = 5
BONUS = 6
WORLD = 7


MASKED = -1e9
"""The logit of a masked action: its probability is 0 in float32 and float64 alike."""


def masked(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """``logits`` with :data:`MASKED` where ``allowed`` is False."""
    return np.where(allowed, logits, np.float32(MASKED)).astype(logits.dtype, copy=False)


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that depends on every key (numpy SeedSequence)."""
    words = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def rng_for(*keys: int) -> np.random.Generator:
    """A numpy Generator for the stream named by ``keys``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in keys])))


def sample_heads(
    logits: np.ndarray, head_sizes: list[int], rng: np.random.Generator | None
) -> tuple[np.ndarray, np.ndarray]:
    """One index per head per row, and the joint log-probability of the choice.

    ``rng`` given: Gumbel-max sampling (``argmax(logits + G)``, ``G = -log(-log U)``), one
    uniform draw per logit so the draws do not depend on the values. ``rng`` None: the argmax
    of every head. Returns (actions int64 [B, n_heads], logp float32 [B]), ``logp`` being the
    sum over heads of the log-softmax at the chosen indices (for :class:`FactoredHeads`, over
    the heads that are part of the action only).
    """
    logits = np.asarray(logits, np.float64)
    rows = logits.shape[0]
    scores = logits
    if rng is not None:
        u = rng.random(logits.shape)
        with np.errstate(divide="ignore"):
            scores = logits - np.log(-np.log(u))
    actions = np.empty((rows, len(head_sizes)), np.int64)
    terms = []
    index = np.arange(rows)
    for h, cols in enumerate(head_slices(head_sizes)):
        choice = scores[:, cols].argmax(axis=1)
        actions[:, h] = choice
        terms.append(log_softmax(logits[:, cols])[index, choice])
    keep = relevant(actions) if isinstance(head_sizes, FactoredHeads) else None
    logp = np.zeros(rows, np.float64)
    for h, term in enumerate(terms):
        logp += term if keep is None else np.where(keep[:, h], term, 0.0)
    return actions, logp.astype(np.float32)


def head_probs(logits: np.ndarray, head_sizes: list[int]) -> list[np.ndarray]:
    """Softmax probabilities of every head, float64 [B, size] each."""
    return [np.exp(log_softmax(logits[:, cols])) for cols in head_slices(head_sizes)]
