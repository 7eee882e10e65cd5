"""Contract tests of Predict, and of requests no client would send."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from casi.v1 import net_pb2

from casi_proto import codec
from casi_proto.client import NetClient
from casi_proto.compliance.base import ContractBase, RawCall, expect_error, raw_tensor
from casi_proto.errors import INVALID_ARGUMENT


class PredictContract(ContractBase):
    """Predict is a function of the observations; bad ones are refused by name."""

    @pytest.mark.parametrize("batch", [1, 5])
    def test_predict_shapes_and_dtypes(self, ready: NetClient, batch: int) -> None:
        logits, values = ready.predict(self.make_obs(batch))
        assert logits.dtype == np.float32 and logits.shape == (batch, sum(self.head_sizes))
        assert values.dtype == np.float32 and values.shape == (batch,)
        assert np.isfinite(logits).all() and np.isfinite(values).all()

    def test_predict_is_a_function_of_obs(self, ready: NetClient) -> None:
        obs = self.make_obs(4, seed=3)
        a, b = ready.predict(obs), ready.predict(obs)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])

    @pytest.mark.parametrize("kind", ["wide", "narrow", "1d", "3d"])
    def test_bad_obs_shape(self, ready: NetClient, raw: RawCall, kind: str) -> None:
        d = self.obs_dim
        shape = {"wide": (3, d + 1), "narrow": (3, d - 1), "1d": (d,), "3d": (2, 3, d)}[kind]
        got = "[" + ", ".join(str(n) for n in shape) + "]"
        request = codec.observations_to_proto(np.zeros(shape, np.float32))
        expect_error(INVALID_ARGUMENT, lambda: raw("Predict", request), "obs", got)

    def test_bad_obs_dtype(self, ready: NetClient, raw: RawCall) -> None:
        request = codec.observations_to_proto(self.make_obs(2).astype(np.float64))
        expect_error(INVALID_ARGUMENT, lambda: raw("Predict", request), "obs", "float64", "float32")

    def test_bad_obs_byte_length(self, ready: NetClient, raw: RawCall) -> None:
        t = codec.to_tensor(self.make_obs(4))
        t.data = t.data[:-3]
        needed = str(4 * self.obs_dim * 4)
        request = net_pb2.Observations(obs=t)
        expect_error(INVALID_ARGUMENT, lambda: raw("Predict", request), "obs", needed)

    def test_garbage_never_kills_the_server(self, ready: NetClient, raw: RawCall) -> None:
        d = self.obs_dim
        garbage = [
            net_pb2.Tensor(),
            raw_tensor(99, [1, d], b"\0" * 4 * d),  # no such dtype
            raw_tensor(net_pb2.DTYPE_FLOAT32, [-1, d], b""),
            raw_tensor(net_pb2.DTYPE_FLOAT32, [2**40, 2**40], b"x"),
            raw_tensor(net_pb2.DTYPE_BOOL, [1, d], b"\7" * d),  # bool bytes must be 0 or 1
        ]
        for tensor in garbage:
            request = net_pb2.Observations(obs=tensor)
            expect_error(INVALID_ARGUMENT, partial(raw, "Predict", request), "obs")
        expect_error(INVALID_ARGUMENT, lambda: raw("Train", net_pb2.Sequences(step=1)), "obs")
        bad_params = net_pb2.Params(tensors={"w": raw_tensor(net_pb2.DTYPE_FLOAT32, [3], b"")})
        expect_error(INVALID_ARGUMENT, lambda: raw("SetParams", bad_params), "w")
        logits, _ = ready.predict(self.make_obs(2))
        assert logits.shape == (2, sum(self.head_sizes))
