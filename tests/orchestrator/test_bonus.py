import numpy as np
import pytest
from casi_orchestrator import bonus as bonus_mod
from casi_orchestrator.bonus import CountBonus, HashTable

OBS_DIM = 40


def binary_obs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, (n, OBS_DIM)).astype(np.float32)


def test_simhash_code_is_the_sign_bits_of_the_projection():
    b = CountBonus("simhash", OBS_DIM, bits=12, beta=1.0, seed=3)
    obs = binary_obs(5)
    proj = obs.astype(np.float64) @ np.random.default_rng(3).standard_normal((12, OBS_DIM)).T
    want = [sum(1 << j for j in range(12) if p[j] > 0) for p in proj]
    assert b.codes(obs).dtype == np.uint64
    assert b.codes(obs).tolist() == want


def test_superbit_code_by_hand():
    b = CountBonus("superbit", 6, bits=2, quant_bits=2, seed=1)
    rng = np.random.default_rng(1)
    perm = rng.permutation(6)
    anchor = rng.integers(0, 2, 6)
    groups = [perm[:3], perm[3:]]
    obs = np.array([[0.9, 0.1, 0.5, 0.49, 1.0, 0.0]], np.float32)
    bits = (obs[0] >= 0.5).astype(int)
    distances = [int((bits[g] != anchor[g]).sum()) for g in groups]
    levels = [d * 4 // 4 for d in distances]  # group size 3: floor(d * 2**2 / (3 + 1))
    assert b.codes(obs).tolist() == [levels[0] | (levels[1] << 2)]


def test_superbit_groups_use_every_column_once():
    b = CountBonus("superbit", 10, bits=3, quant_bits=3, seed=0)
    assert sorted(np.bincount(b.groups).tolist()) == [3, 3, 4]
    # all ones against the anchor: distance of a group = number of zero anchor bits in it
    codes = b.codes(np.ones((1, 10), np.float32))
    for g in range(3):
        cols = b.groups == g
        d = int((b.anchor[cols] == 0).sum())
        assert (int(codes[0]) >> (3 * g)) & 7 == d * 8 // (cols.sum() + 1)


@pytest.mark.parametrize("kind", ["simhash", "superbit"])
def test_codes_are_deterministic_given_the_seed(kind):
    obs = binary_obs(50)
    a = CountBonus(kind, OBS_DIM, bits=8, quant_bits=2, seed=7).codes(obs)
    b = CountBonus(kind, OBS_DIM, bits=8, quant_bits=2, seed=7).codes(obs)
    c = CountBonus(kind, OBS_DIM, bits=8, quant_bits=2, seed=8).codes(obs)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kind", ["simhash", "superbit"])
def test_identical_rows_share_a_code_and_near_rows_mostly_do(kind):
    b = CountBonus(kind, OBS_DIM, bits=8, quant_bits=2, seed=0)
    obs = binary_obs(200, seed=1)
    codes = b.codes(np.concatenate([obs, obs]))
    np.testing.assert_array_equal(codes[:200], codes[200:])
    near = obs.copy()
    near[np.arange(200), np.random.default_rng(2).integers(0, OBS_DIM, 200)] += 0.01
    far = binary_obs(200, seed=3)
    same_near = (b.codes(near) == codes[:200]).mean()
    same_far = (b.codes(far) == codes[:200]).mean()
    assert same_near > 0.8
    assert same_far < 0.3


@pytest.mark.parametrize("kind", ["simhash", "superbit"])
def test_counts_rise_by_one_per_visit_and_bonus_is_beta_over_sqrt_n(kind):
    b = CountBonus(kind, OBS_DIM, bits=10, quant_bits=2, beta=0.3, seed=0)
    x, y = binary_obs(2, seed=5)
    assert b.codes(x[None])[0] != b.codes(y[None])[0]
    out = b(np.stack([x, x, y]))
    assert out.dtype == np.float32
    # counts after the whole call: x seen twice, y once
    np.testing.assert_array_equal(out, np.float32([0.3 / np.sqrt(2), 0.3 / np.sqrt(2), 0.3]))
    for n in range(3, 7):
        out = b(x[None])
        assert out[0] == np.float32(0.3 / np.sqrt(n))
    np.testing.assert_array_equal(b.counts(b.codes(np.stack([x, y]))), [6, 1])


def test_kind_none_gives_zeros_and_no_table():
    b = CountBonus("none", OBS_DIM, beta=1.0)
    out = b(binary_obs(4))
    assert out.dtype == np.float32 and out.tolist() == [0.0] * 4
    assert b.codes(binary_obs(2)).tolist() == [0, 0]
    assert b.state()["keys"].size == 0


def test_dense_and_hash_table_paths_agree(monkeypatch):
    obs = np.concatenate([binary_obs(300, seed=9), binary_obs(100, seed=9)])
    dense = CountBonus("superbit", OBS_DIM, bits=10, quant_bits=2, seed=4)
    monkeypatch.setattr(bonus_mod, "DENSE_MAX_BITS", 8)
    hashed = CountBonus("superbit", OBS_DIM, bits=10, quant_bits=2, seed=4)
    assert isinstance(hashed.table, HashTable)
    assert not isinstance(dense.table, HashTable)
    for chunk in np.array_split(obs, 4):
        np.testing.assert_array_equal(dense(chunk), hashed(chunk))
    for name in ("keys", "counts"):
        np.testing.assert_array_equal(dense.state()[name], hashed.state()[name])
    assert dense.state()["counts"].sum() == 400


def test_hash_table_grows_and_keeps_every_count():
    table = HashTable(capacity=16)
    codes = np.random.default_rng(0).integers(0, 2**63, 1000, dtype=np.int64).astype(np.uint64)
    codes = np.concatenate([codes, codes[:10], np.array([0, 0], np.uint64)])
    table.add(codes, np.ones(len(codes), np.int64))
    assert len(table.keys) == 2048  # 1001 keys need more than 0.7 * 1024 slots
    assert table.size == 1001
    assert table.counts.sum() == len(codes)
    got = table.get(codes)
    assert got[:10].tolist() == [2] * 10 and got[10:1000].tolist() == [1] * 990
    assert got[-1] == 2  # code 0 is an ordinary key
    assert table.get(np.array([12345], np.uint64)).tolist() == [0]


def test_wide_simhash_uses_the_hash_table():
    b = CountBonus("simhash", OBS_DIM, bits=64, beta=1.0, seed=0)
    assert isinstance(b.table, HashTable)
    obs = binary_obs(3000, seed=1)
    b(obs)
    out = b(obs[:5])
    np.testing.assert_array_equal(out, np.float32(1 / np.sqrt(2)))


@pytest.mark.parametrize("dense_max", [24, 4])
def test_state_round_trip_continues_counting_exactly(monkeypatch, dense_max):
    monkeypatch.setattr(bonus_mod, "DENSE_MAX_BITS", dense_max)
    obs = binary_obs(100, seed=2)
    a = CountBonus("simhash", OBS_DIM, bits=12, beta=0.5, seed=1)
    a(obs[:60])
    state = {k: v.copy() for k, v in a.state().items()}
    b = CountBonus("simhash", OBS_DIM, bits=12, beta=0.5, seed=1)
    b.load(state)
    np.testing.assert_array_equal(a(obs[40:]), b(obs[40:]))
    for name in ("keys", "counts"):
        np.testing.assert_array_equal(a.state()[name], b.state()[name])


def test_load_refuses_state_from_another_bonus():
    a = CountBonus("simhash", OBS_DIM, bits=12, seed=1)
    with pytest.raises(ValueError, match="different bonus"):
        CountBonus("simhash", OBS_DIM, bits=12, seed=2).load(a.state())
    with pytest.raises(ValueError, match="missing array 'counts'"):
        a.load({"keys": np.zeros(0, np.uint64), "config": a.state()["config"]})


def test_bad_config_and_obs_are_named():
    with pytest.raises(ValueError, match="kind must be one of"):
        CountBonus("md5", OBS_DIM)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bits \\* quant_bits <= 64"):
        CountBonus("superbit", OBS_DIM, bits=33, quant_bits=2)
    with pytest.raises(ValueError, match=f"obs must be \\[N, {OBS_DIM}\\]"):
        CountBonus("simhash", OBS_DIM)(np.zeros((3, OBS_DIM + 1), np.float32))
