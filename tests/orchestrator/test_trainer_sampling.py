"""Action sampling from logits and the derived random streams."""

from __future__ import annotations

import numpy as np
from casi_orchestrator import sampling


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def test_gumbel_max_frequencies_match_the_softmax() -> None:
    heads = [4, 3]
    row = np.array([2.0, 0.0, -1.0, 0.5, 0.0, 1.0, -2.0], np.float32)
    n = 40_000
    logits = np.tile(row, (n, 1))
    actions, _ = sampling.sample_heads(logits, heads, np.random.default_rng(7))
    for h, cols in enumerate(sampling.head_slices(heads)):
        p = softmax(row[cols].astype(np.float64))
        counts = np.bincount(actions[:, h], minlength=len(p))
        chi2 = float((((counts - n * p) ** 2) / (n * p)).sum())
        # df = 3 and 2: the 99.9% quantiles are 16.3 and 13.8
        assert chi2 < 16.3, (h, counts, n * p)


def test_logp_is_the_sum_of_per_head_log_softmax() -> None:
    # two heads of sizes 2 and 3, hand-computed
    logits = np.array([[0.0, np.log(3.0), 0.0, 0.0, np.log(2.0)]], np.float32)
    actions, logp = sampling.sample_heads(logits, [2, 3], rng=None)
    assert actions.tolist() == [[1, 2]]
    # p(head 0 = 1) = 3/4, p(head 1 = 2) = 2/4
    assert np.isclose(logp[0], np.log(0.75) + np.log(0.5), atol=1e-6)
    rng = np.random.default_rng(3)
    many = np.random.default_rng(4).normal(size=(50, 9)).astype(np.float32)
    acts, lp = sampling.sample_heads(many, [5, 2, 2], rng)
    expect = np.zeros(50)
    for h, cols in enumerate(sampling.head_slices([5, 2, 2])):
        ls = many[:, cols] - np.log(np.exp(many[:, cols].astype(np.float64)).sum(1, keepdims=True))
        expect += ls[np.arange(50), acts[:, h]]
    assert lp.dtype == np.float32
    np.testing.assert_allclose(lp, expect, atol=1e-5)


def test_greedy_takes_the_argmax_of_every_head() -> None:
    logits = np.array([[1.0, 5.0, 2.0, 9.0, 0.0], [3.0, 1.0, 0.0, -1.0, -5.0]], np.float32)
    actions, _ = sampling.sample_heads(logits, [3, 2], rng=None)
    assert actions.tolist() == [[1, 0], [0, 0]]


def test_sampling_is_a_pure_function_of_the_stream() -> None:
    logits = np.zeros((16, 8), np.float32)
    a, _ = sampling.sample_heads(logits, [4, 4], sampling.rng_for(1, 0, 3, 5))
    b, _ = sampling.sample_heads(logits, [4, 4], sampling.rng_for(1, 0, 3, 5))
    c, _ = sampling.sample_heads(logits, [4, 4], sampling.rng_for(1, 0, 3, 6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_derived_seeds_are_stable_distinct_and_fit_63_bits() -> None:
    seeds = {
        sampling.derive_seed(0, t, p, i) for t in range(3) for p in range(8) for i in range(20)
    }
    assert len(seeds) == 3 * 8 * 20
    assert all(0 <= s < 2**63 for s in seeds)
    assert sampling.derive_seed(5, 1, 2, 3) == sampling.derive_seed(5, 1, 2, 3)
