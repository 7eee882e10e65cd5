"""casi_proto.validate: every message reads `<field>: expected ..., got ...`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from casi_proto import PROTOCOL_VERSION
from casi_proto.api import Sequences
from casi_proto.compliance import NetContract
from casi_proto.errors import NetError
from casi_proto.validate import (
    check_array,
    check_hidden_batch,
    check_net_cfg,
    check_obs,
    check_sequences,
    check_state,
    check_version,
    is_repeat,
)


def message(code: str, call: Callable[[], object]) -> str:
    with pytest.raises(NetError) as info:
        call()
    assert info.value.code == code, info.value
    return info.value.message


def invalid(call: Callable[[], object]) -> str:
    return message("INVALID_ARGUMENT", call)


def test_named_sizes_match_any_size_from_one() -> None:
    assert check_array("x", np.zeros((3, 4), np.float32), np.float32, ("B", 4)).shape == (3, 4)
    empty = np.zeros((0, 4), np.float32)
    assert invalid(lambda: check_array("x", empty, np.float32, ("B", 4))) == (
        "x: expected float32 [B, 4], got float32 [0, 4]"
    )
    assert invalid(lambda: check_array("x", [1.0], np.float32, ("B",))) == (
        "x: expected float32 [B], got list"
    )
    assert check_array("x", np.float32(2.0), np.float32, ()).shape == ()


def test_obs_must_be_finite() -> None:
    obs = np.zeros((2, 3), np.float32)
    obs[1, 2] = np.nan
    assert (
        invalid(lambda: check_obs(obs, 3)) == "obs: expected finite values, got nan at index [1, 2]"
    )
    assert "expected float32 [4, 3]" in invalid(lambda: check_obs(obs, 3, rows=4))


def sequences(b: int = 2, t: int = 3) -> Sequences:
    f = np.zeros((b, t), np.float32)
    return Sequences(
        np.zeros((b, t, 4), np.float32), np.zeros((b, t, 2), np.int64), f, f, f, f, f + 1
    )


def test_sequences() -> None:
    good = sequences()
    assert check_sequences(good, 4, [3, 5]).obs.shape == (2, 3, 4)
    actions = good.actions.copy()
    actions[1, 2, 1] = 5
    assert invalid(lambda: check_sequences(good._replace(actions=actions), 4, [3, 5])) == (
        "actions: head 1 has 5 actions (0..4), got 5 at [1, 2, 1]"
    )
    mask = good.mask.copy()
    mask[0, 1] = 0.5
    assert invalid(lambda: check_sequences(good._replace(mask=mask), 4, [3, 5])) == (
        "mask: expected only 0 and 1, got 0.5 at index [0, 1]"
    )
    short = good._replace(returns=np.zeros((2, 2), np.float32))
    assert invalid(lambda: check_sequences(short, 4, [3, 5])) == (
        "returns: expected float32 [2, 3], got float32 [2, 2]"
    )


def test_state_keys_shapes_and_dtypes() -> None:
    expected = {"w": ((2,), np.float32)}
    assert set(check_state("tensors", {"w": np.zeros(2, np.float32)}, expected)) == {"w"}
    assert invalid(lambda: check_state("tensors", {"v": np.zeros(2)}, expected)) == (
        "tensors: missing key(s) 'w'; unexpected key(s) 'v' (expected 1 keys)"
    )
    assert invalid(lambda: check_state("tensors", {"w": np.zeros(2)}, expected)) == (
        "tensors['w']: expected float32 [2], got float64 [2]"
    )


def test_small_fields() -> None:
    assert check_hidden_batch(3) == 3
    assert invalid(lambda: check_hidden_batch(0)) == "HiddenCfg.batch: expected >= 1, got 0"
    assert check_version(np.int64(4)) == 4
    assert invalid(lambda: check_version(-1)) == (
        "Params.version: expected an integer >= 0, got -1"
    )
    cfg = NetContract().make_cfg(obs_dim=0)
    assert invalid(lambda: check_net_cfg(cfg)) == "NetCfg.obs_dim: expected > 0, got 0"
    cfg = NetContract().make_cfg(protocol_version=PROTOCOL_VERSION + 1)
    assert f"sent {PROTOCOL_VERSION + 1}" in message(
        "FAILED_PRECONDITION", lambda: check_net_cfg(cfg)
    )


def test_train_steps() -> None:
    assert not is_repeat(1, None, False)
    assert not is_repeat(-5, None, False)  # nothing applied yet: any step is new
    assert not is_repeat(4, 3, True)
    assert is_repeat(3, 3, True)
    older = message("FAILED_PRECONDITION", lambda: is_repeat(2, 3, True))
    assert older.startswith("Sequences.step: expected a step after the last applied step 3")
    assert "got step 2" in older
    unknown = message("FAILED_PRECONDITION", lambda: is_repeat(3, 3, False))
    assert "got step 3" in unknown and "loss is not known" in unknown


def test_rows_are_capped_by_the_documented_limit() -> None:
    from casi_proto.validate import MAX_ROWS

    assert check_hidden_batch(MAX_ROWS) == MAX_ROWS
    assert invalid(lambda: check_hidden_batch(20_000_000)) == (
        f"HiddenCfg.batch: expected at most {MAX_ROWS} (the row limit), got 20000000"
    )
    assert check_obs(np.zeros((MAX_ROWS, 1), np.float32), 1).shape == (MAX_ROWS, 1)
    assert invalid(lambda: check_obs(np.zeros((MAX_ROWS + 1, 1), np.float32), 1)) == (
        f"obs: expected at most {MAX_ROWS} rows (the row limit), got {MAX_ROWS + 1}"
    )
