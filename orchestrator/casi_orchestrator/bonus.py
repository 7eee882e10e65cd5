"""Count-based exploration bonus on hashed observations (Tang et al. 2017).

Every observation is mapped to a code of ``total_bits`` bits; a count table
remembers how often each code was seen and the bonus is ``beta / sqrt(n)``.

- ``simhash``: bit ``j`` is 1 where ``(A x)[j] > 0``, ``A ~ N(0, 1)`` of shape
  ``bits x obs_dim`` drawn from ``seed``; ``total_bits = bits``.
- ``superbit``: the input is binarised (``x >= 0.5``), its columns are permuted
  and split into ``bits`` groups of nearly equal size (each column used once);
  each group's Hamming distance ``d`` to a random anchor bit pattern, out of
  the group's size ``s``, is quantised to ``q = quant_bits`` bits as
  ``floor(d * 2**q / (s + 1))`` (lossless when ``s < 2**q``); group ``g`` fills
  bits ``[g*q, (g+1)*q)``; ``total_bits = bits * quant_bits``.
- ``none``: no bonus (zeros) and no table.

The table is a dense ``int64`` array of ``2**total_bits`` entries when
``total_bits <= 24``, otherwise an open-addressing hash table (linear probing)
on preallocated arrays that doubles once 70% full. Both run in numba kernels.
"""

from __future__ import annotations

from typing import Literal

import numba
import numpy as np
from casi_sim.kernel import mix

Kind = Literal["none", "simhash", "superbit"]
KINDS = ("none", "simhash", "superbit")
DENSE_MAX_BITS = 24
MAX_LOAD = 0.7
_MIN_CAPACITY = 1024


class CountBonus:
    """Hash, count and reward novelty; one instance per learning agent."""

    def __init__(
        self,
        kind: Kind,
        obs_dim: int,
        bits: int = 16,
        quant_bits: int = 2,
        beta: float = 0.05,
        seed: int = 0,
    ) -> None:
        _check_config(kind, obs_dim, bits, quant_bits, beta)
        self.kind, self.obs_dim, self.bits = kind, obs_dim, bits
        self.quant_bits, self.beta, self.seed = quant_bits, float(beta), seed
        rng = np.random.default_rng(seed)
        if kind == "simhash":
            self.total_bits = bits
            self.projection = rng.standard_normal((bits, obs_dim))
        elif kind == "superbit":
            self.total_bits = bits * quant_bits
            self.groups = _group_ids(rng.permutation(obs_dim), bits)
            self.anchor = rng.integers(0, 2, obs_dim).astype(np.int64)
        else:
            self.total_bits = 0
        self.table = _make_table(self.total_bits) if kind != "none" else None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Count every row, then return ``beta / sqrt(n(code))`` per row, float32 [N]."""
        obs = self._check_obs(obs)
        if self.table is None:
            return np.zeros(len(obs), np.float32)
        codes = self.codes(obs)
        self.table.add(codes, np.ones(len(codes), np.int64))
        counts = self.table.get(codes)
        return (self.beta / np.sqrt(counts)).astype(np.float32)

    def codes(self, obs: np.ndarray) -> np.ndarray:
        """The hash code of every row, uint64 [N] (zeros for kind ``none``)."""
        obs = self._check_obs(obs)
        if self.kind == "simhash":
            return _pack_bits(obs.astype(np.float64) @ self.projection.T > 0)
        if self.kind == "superbit":
            return _superbit_codes(obs, self.groups, self.anchor, self.quant_bits)
        return np.zeros(len(obs), np.uint64)

    def counts(self, codes: np.ndarray) -> np.ndarray:
        """How often each code has been seen, int64 [N]."""
        if self.table is None:
            return np.zeros(len(codes), np.int64)
        return self.table.get(np.asarray(codes, np.uint64))

    def state(self) -> dict[str, np.ndarray]:
        """Counts as plain arrays: ``keys`` uint64 [n] (sorted), ``counts`` int64 [n], ``config``."""
        if self.table is None:
            keys, counts = np.zeros(0, np.uint64), np.zeros(0, np.int64)
        else:
            keys, counts = self.table.items()
        return {"keys": keys, "counts": counts, "config": self._config_array()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        """Replace the counts with those of :meth:`state` from an identically built bonus."""
        for name in ("keys", "counts", "config"):
            if name not in state:
                raise ValueError(f"bonus state: missing array {name!r}")
        config = np.asarray(state["config"])
        if not np.array_equal(config, self._config_array()):
            raise ValueError(
                f"bonus state was saved by a different bonus: config {config.tolist()}, "
                f"expected {self._config_array().tolist()} (kind, obs_dim, bits, quant_bits, seed)"
            )
        keys, counts = np.asarray(state["keys"]), np.asarray(state["counts"])
        if keys.shape != counts.shape or keys.ndim != 1:
            raise ValueError(
                f"bonus state: keys {keys.shape} and counts {counts.shape} must be equal 1-D"
            )
        if self.table is None:
            return
        self.table = _make_table(self.total_bits)
        self.table.add(keys.astype(np.uint64), counts.astype(np.int64))

    def _config_array(self) -> np.ndarray:
        """What decides the codes: kind, obs_dim, bits, quant_bits, seed (unused ones 0)."""
        bits = self.bits if self.kind != "none" else 0
        quant_bits = self.quant_bits if self.kind == "superbit" else 0
        seed = self.seed if self.kind != "none" else 0
        kind = KINDS.index(self.kind)
        return np.array([kind, self.obs_dim, bits, quant_bits, seed], np.int64)

    def _check_obs(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"bonus: obs must be [N, {self.obs_dim}], got shape {obs.shape}")
        return obs


def _check_config(kind: str, obs_dim: int, bits: int, quant_bits: int, beta: float) -> None:
    if kind not in KINDS:
        raise ValueError(f"bonus kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if obs_dim < 1:
        raise ValueError(f"bonus obs_dim must be >= 1, got {obs_dim}")
    if beta < 0:
        raise ValueError(f"bonus beta must be >= 0, got {beta}")
    if kind == "simhash" and not 1 <= bits <= 64:
        raise ValueError(f"simhash bits must be in [1, 64], got {bits}")
    if kind == "superbit":
        if not 1 <= bits <= obs_dim:
            raise ValueError(
                f"superbit bits (groups) must be in [1, obs_dim={obs_dim}], got {bits}"
            )
        if quant_bits < 1 or bits * quant_bits > 64:
            raise ValueError(
                f"superbit needs quant_bits >= 1 and bits * quant_bits <= 64, "
                f"got bits={bits}, quant_bits={quant_bits}"
            )


def _group_ids(perm: np.ndarray, n_groups: int) -> np.ndarray:
    """Group of every input column: the permuted columns split into near-equal runs."""
    groups = np.empty(len(perm), np.int64)
    for g, cols in enumerate(np.array_split(perm, n_groups)):
        groups[cols] = g
    return groups


def _pack_bits(bits: np.ndarray) -> np.ndarray:
    """bool [N, k] -> uint64 [N], column j as bit j."""
    shifts = np.arange(bits.shape[1], dtype=np.uint64)
    return (bits.astype(np.uint64) << shifts).sum(axis=1, dtype=np.uint64)


def _superbit_codes(obs: np.ndarray, groups: np.ndarray, anchor: np.ndarray, q: int) -> np.ndarray:
    membership = np.eye(groups.max() + 1)[groups]  # [obs_dim, n_groups] of 0/1
    n_groups = membership.shape[1]
    differs = ((obs >= 0.5) != anchor).astype(np.float64)
    distance = np.rint(differs @ membership).astype(np.int64)  # small integers: exact
    sizes = np.bincount(groups).astype(np.int64)
    levels = (distance << q) // (sizes + 1)
    shifts = (np.arange(n_groups) * q).astype(np.uint64)
    return (levels.astype(np.uint64) << shifts).sum(axis=1, dtype=np.uint64)


class DenseTable:
    """Counts for every code of up to ``DENSE_MAX_BITS`` bits in one array."""

    def __init__(self, total_bits: int) -> None:
        self.counts = np.zeros(1 << total_bits, np.int64)

    def add(self, codes: np.ndarray, amounts: np.ndarray) -> None:
        if len(codes) and int(codes.max()) >= len(self.counts):
            raise ValueError(f"count table: code {int(codes.max())} >= size {len(self.counts)}")
        _dense_add(self.counts, codes, amounts)

    def get(self, codes: np.ndarray) -> np.ndarray:
        return self.counts[codes]

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        keys = np.flatnonzero(self.counts)
        return keys.astype(np.uint64), self.counts[keys]


class HashTable:
    """Open addressing with linear probing; a slot is empty while its count is 0."""

    def __init__(self, capacity: int = _MIN_CAPACITY) -> None:
        self.keys = np.zeros(capacity, np.uint64)
        self.counts = np.zeros(capacity, np.int64)
        self.size = 0

    def add(self, codes: np.ndarray, amounts: np.ndarray) -> None:
        start = 0
        while start < len(codes):
            limit = int(MAX_LOAD * len(self.keys))
            start, self.size = _hash_add(
                self.keys, self.counts, self.size, limit, codes, amounts, start
            )
            if start < len(codes):
                self._grow()

    def get(self, codes: np.ndarray) -> np.ndarray:
        return _hash_get(self.keys, self.counts, codes)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        used = self.counts > 0
        order = np.argsort(self.keys[used], kind="stable")
        return self.keys[used][order], self.counts[used][order]

    def _grow(self) -> None:
        keys, counts = self.items()
        self.keys = np.zeros(2 * len(self.keys), np.uint64)
        self.counts = np.zeros(len(self.keys), np.int64)
        self.size = 0
        self.add(keys, counts)


def _make_table(total_bits: int) -> DenseTable | HashTable:
    return DenseTable(total_bits) if total_bits <= DENSE_MAX_BITS else HashTable()


@numba.njit(cache=True)
def _dense_add(table: np.ndarray, codes: np.ndarray, amounts: np.ndarray) -> None:
    for i in range(len(codes)):
        table[codes[i]] += amounts[i]


@numba.njit(cache=True)
def _slot(key: np.uint64, mask: np.uint64) -> np.uint64:
    # the simulator's splitmix64 spreads nearby codes over the table
    return mix(key) & mask


@numba.njit(cache=True)
def _hash_add(keys, counts, size, limit, codes, amounts, start):  # type: ignore[no-untyped-def]
    """Add ``amounts`` from row ``start`` on; stop before a new key would pass ``limit``.

    Returns (first row not added, new size).
    """
    mask = np.uint64(len(keys) - 1)
    for i in range(start, len(codes)):
        if amounts[i] <= 0:
            continue
        j = _slot(codes[i], mask)
        while counts[j] > 0 and keys[j] != codes[i]:
            j = (j + np.uint64(1)) & mask
        if counts[j] == 0:
            if size >= limit:
                return i, size
            keys[j] = codes[i]
            size += 1
        counts[j] += amounts[i]
    return len(codes), size


@numba.njit(cache=True)
def _hash_get(keys, counts, codes):  # type: ignore[no-untyped-def]
    mask = np.uint64(len(keys) - 1)
    out = np.zeros(len(codes), np.int64)
    for i in range(len(codes)):
        j = _slot(codes[i], mask)
        while counts[j] > 0:
            if keys[j] == codes[i]:
                out[i] = counts[j]
                break
            j = (j + np.uint64(1)) & mask
    return out
