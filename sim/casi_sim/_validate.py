"""Checks shared by the simulator and the reference: actions and seeds."""

from __future__ import annotations

import numpy as np


def as_actions(
    main: object,
    intentions: object,
    acting: np.ndarray,
    n_main_actions: int,
    n_intentions: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Int64 copies of the actions; ValueError for a bad shape, dtype or value.

    Only the slots in ``acting`` [B, na] (learner slots of agents that are not done) are
    checked; whatever else the caller passes is ignored, as is an agent's intention towards
    itself.
    """
    batch, na = acting.shape
    main_arr = _integers("main", main, (batch, na))
    int_arr = _integers("intentions", intentions, (batch, na, na))
    bad = acting & ((main_arr < 0) | (main_arr >= n_main_actions))
    if bad.any():
        b, i = (int(x) for x in np.argwhere(bad)[0])
        raise ValueError(
            f"main action of episode {b}, agent {i} must be in [0, {n_main_actions}), "
            f"got {int(main_arr[b, i])}"
        )
    others = ~np.eye(na, dtype=bool)
    bad3 = acting[:, :, None] & others[None] & ((int_arr < 0) | (int_arr >= n_intentions))
    if bad3.any():
        b, i, j = (int(x) for x in np.argwhere(bad3)[0])
        raise ValueError(
            f"intention of episode {b}, agent {i} towards agent {j} must be in "
            f"[0, {n_intentions}), got {int(int_arr[b, i, j])}"
        )
    return main_arr, int_arr


def _integers(name: str, value: object, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_seed(seed: object) -> int:
    """A seed is a Python or numpy integer; it is used modulo 2**64."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return int(seed)


def check_batch(batch: object) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int | np.integer) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    return int(batch)
