"""Contract tests of GetParams and SetParams."""

from __future__ import annotations

import numpy as np
import pytest
from casi.v1 import net_pb2

from casi_proto import codec
from casi_proto.api import Params
from casi_proto.client import NetClient
from casi_proto.compliance.base import (
    ContractBase,
    RawCall,
    assert_params_equal,
    expect_error,
    raw_tensor,
)
from casi_proto.errors import INVALID_ARGUMENT


def _flawed(good: Params, flaw: str) -> tuple[str, dict[str, np.ndarray]]:
    """The tensors of ``good`` with one flaw, and the key it is in."""
    tensors = dict(good.tensors)
    key = sorted(tensors)[0] if tensors else "bogus.weight"
    if flaw == "extra_key":
        key = "bogus.weight"
        tensors[key] = np.zeros(3, np.float32)
    elif flaw == "missing_key":
        del tensors[key]
    elif flaw == "shape":
        tensors[key] = np.zeros((*tensors[key].shape, 2), tensors[key].dtype)
    elif flaw == "dtype":
        other = np.float64 if tensors[key].dtype == np.float32 else np.float32
        tensors[key] = tensors[key].astype(other)
    else:
        tensors[key] = tensors[key].copy()
        tensors[key].flat[0] = np.nan
    return key, tensors


class ParamsContract(ContractBase):
    """The state round-trips bit for bit; a bad SetParams changes nothing."""

    def test_params_round_trip_bit_exact(self, ready: NetClient) -> None:
        obs = self.make_obs(3)
        start = ready.get_params()
        before = ready.predict(obs)
        ready.train(1, self.make_sequences(ready))
        trained = ready.get_params()
        ready.set_params(start)
        assert_params_equal(ready.get_params(), start)
        np.testing.assert_array_equal(ready.predict(obs)[0], before[0])
        ready.set_params(trained)
        assert_params_equal(ready.get_params(), trained)

    @pytest.mark.parametrize("flaw", ["extra_key", "missing_key", "shape", "dtype", "nan"])
    def test_bad_set_params_changes_nothing(
        self, ready: NetClient, raw: RawCall, flaw: str
    ) -> None:
        ready.train(1, self.make_sequences(ready))
        good = ready.get_params()
        if flaw != "extra_key" and not good.tensors:
            pytest.skip("this implementation has no parameters")
        key, tensors = _flawed(good, flaw)
        request = codec.params_to_proto(good._replace(tensors=tensors))
        expect_error(INVALID_ARGUMENT, lambda: raw("SetParams", request), key)
        assert_params_equal(ready.get_params(), good)

    def test_set_params_bad_byte_length(self, ready: NetClient, raw: RawCall) -> None:
        good = ready.get_params()
        key = sorted(good.tensors)[0] if good.tensors else "bogus.weight"
        msg = net_pb2.Params(tensors={key: raw_tensor(net_pb2.DTYPE_FLOAT32, [2, 3], b"\0" * 5)})
        expect_error(INVALID_ARGUMENT, lambda: raw("SetParams", msg), key, "24")
        assert_params_equal(ready.get_params(), good)
