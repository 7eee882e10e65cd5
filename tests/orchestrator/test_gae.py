import numpy as np
import pytest
from casi_orchestrator.gae import gae


def row(*xs: float) -> np.ndarray:
    return np.array([xs], dtype=np.float32)


def naive_gae(r, v, m, gamma, lam):
    """A plain double loop: sum of discounted TD errors until the agent stops acting."""
    b_count, t_count = r.shape
    adv = np.zeros((b_count, t_count))
    for b in range(b_count):
        for t in range(t_count):
            if not m[b, t]:
                continue
            total, weight, k = 0.0, 1.0, t
            while True:
                acts_next = k + 1 < t_count and m[b, k + 1] == 1
                next_v = v[b, k + 1] if acts_next else 0.0
                total += weight * (r[b, k] + gamma * next_v - v[b, k])
                if not acts_next:
                    break
                weight *= gamma * lam
                k += 1
            adv[b, t] = total
    return adv, (adv + v) * m


def test_gamma_zero_gives_reward_minus_value():
    r, v, m = row(1, 2, 3), row(0.5, 0.25, 4), row(1, 1, 1)
    adv, ret = gae(r, v, m, gamma=0.0, lam=0.95)
    np.testing.assert_allclose(adv, [[0.5, 1.75, -1.0]])
    np.testing.assert_allclose(ret, [[1, 2, 3]])


def test_lambda_one_gives_monte_carlo_return_minus_value():
    r, v, m = row(1, 2, 4), row(3, 1, 2), row(1, 1, 1)
    adv, ret = gae(r, v, m, gamma=0.5, lam=1.0)
    # returns: G2 = 4, G1 = 2 + 0.5*4 = 4, G0 = 1 + 0.5*4 = 3
    np.testing.assert_allclose(ret, [[3, 4, 4]])
    np.testing.assert_allclose(adv, [[0, 3, 2]])


def test_lambda_zero_gives_one_step_td():
    r, v, m = row(1, 2, 4), row(3, 1, 2), row(1, 1, 1)
    adv, ret = gae(r, v, m, gamma=0.5, lam=0.0)
    # 1 + 0.5*1 - 3, 2 + 0.5*2 - 1, 4 - 2
    np.testing.assert_allclose(adv, [[-1.5, 2.0, 2.0]])
    np.testing.assert_allclose(ret, [[1.5, 3.0, 4.0]])


def test_done_in_middle_stops_the_flow():
    r, v, m = row(1, 10, 100, 1000), row(1, 2, 3, 4), row(1, 1, 0, 0)
    adv, ret = gae(r, v, m, gamma=0.5, lam=0.5)
    # t=1 is the last acted step: delta1 = 10 - 2 = 8; t=0: delta0 = 1 + 0.5*2 - 1 = 1
    # adv0 = 1 + 0.25 * 8 = 3
    np.testing.assert_allclose(adv, [[3, 8, 0, 0]])
    np.testing.assert_allclose(ret, [[4, 10, 0, 0]])


def test_agent_acting_only_on_some_steps():
    r, v, m = row(1, 7, 2, 3), row(1, 5, 1, 2), row(1, 0, 1, 1)
    adv, ret = gae(r, v, m, gamma=0.5, lam=0.5)
    # t=3: 3 - 2 = 1; t=2: 2 + 0.5*2 - 1 + 0.25*1 = 2.25
    # t=1 not acted -> 0; t=0 does not see t=1 or beyond: 1 - 1 = 0
    np.testing.assert_allclose(adv, [[0, 0, 2.25, 1]])
    np.testing.assert_allclose(ret, [[1, 0, 3.25, 3]])


def test_single_step():
    adv, ret = gae(row(2), row(0.5), row(1), gamma=0.99, lam=0.95)
    np.testing.assert_allclose(adv, [[1.5]])
    np.testing.assert_allclose(ret, [[2.0]])
    adv, ret = gae(row(2), row(0.5), row(0), gamma=0.99, lam=0.95)
    np.testing.assert_array_equal(adv, [[0.0]])
    np.testing.assert_array_equal(ret, [[0.0]])


def test_batch_rows_are_independent():
    r = np.array([[1, 2], [3, 4]], np.float32)
    v = np.array([[0, 1], [1, 0]], np.float32)
    m = np.array([[1, 1], [1, 0]], np.float32)
    adv, _ = gae(r, v, m, gamma=1.0, lam=1.0)
    np.testing.assert_allclose(adv, [[3, 1], [2, 0]])


@pytest.mark.parametrize("seed", range(5))
def test_matches_naive_double_loop(seed):
    rng = np.random.default_rng(seed)
    b_count, t_count = 7, 12
    r = rng.normal(size=(b_count, t_count)).astype(np.float32)
    v = rng.normal(size=(b_count, t_count)).astype(np.float32)
    m = (rng.random((b_count, t_count)) < 0.7).astype(np.float32)
    m[0] = 1.0
    m[1] = np.arange(t_count) < 5  # done in the middle
    gamma, lam = rng.uniform(0.5, 1.0), rng.uniform(0.0, 1.0)
    adv, ret = gae(r, v, m, gamma, lam)
    want_adv, want_ret = naive_gae(r, v, m, gamma, lam)
    assert adv.dtype == ret.dtype == np.float32
    np.testing.assert_allclose(adv, want_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, want_ret, rtol=1e-5, atol=1e-5)
    assert (adv[m == 0] == 0).all() and (ret[m == 0] == 0).all()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="values has shape"):
        gae(np.zeros((2, 3)), np.zeros((2, 4)), np.ones((2, 3)), 0.9, 0.9)
    with pytest.raises(ValueError, match="gamma"):
        gae(np.zeros((2, 3)), np.zeros((2, 3)), np.ones((2, 3)), 1.5, 0.9)
    with pytest.raises(ValueError, match="mask"):
        gae(np.zeros((2, 3)), np.zeros((2, 3)), np.full((2, 3), 0.5), 0.9, 0.9)
