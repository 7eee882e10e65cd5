"""Contract tests of the Act stream (minor 1), for a server whose InitReply offers it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from casi.v1 import net_pb2

from casi_proto import PROTOCOL_MINOR, codec
from casi_proto.client import UNIMPLEMENTED, NetClient
from casi_proto.compliance.base import (
    ContractBase,
    Endpoint,
    act_raw,
    expect_error,
    fresh_server,
)
from casi_proto.errors import FAILED_PRECONDITION, INVALID_ARGUMENT, NetError


class ActContract(ContractBase):
    """Act answers every request as Predict would, in order, and ends at the first refused one.

    Skipped for a server that does not offer the stream (``InitReply.act_stream`` false):
    the unary rpcs alone are a complete implementation; the client then uses Predict.
    """

    @pytest.fixture
    def streaming(self, ready: NetClient) -> NetClient:
        if not ready.act_stream:
            pytest.skip("this implementation offers only unary Predict (act_stream false)")
        return ready

    def test_init_reply_names_the_minor_version(self, client: NetClient) -> None:
        reply = client.init(self.make_cfg())
        if reply.act_stream:
            assert reply.protocol_minor >= PROTOCOL_MINOR, reply

    def test_replies_in_order_as_predict_answers(
        self, streaming: NetClient, endpoint: Endpoint, channel: object
    ) -> None:
        batches = [self.make_obs(n, seed=n) for n in (1, 5, 3, 8)]
        requests = [codec.observations_to_proto(obs) for obs in batches]
        replies = act_raw(channel, requests, endpoint.metadata())  # type: ignore[arg-type]
        assert len(replies) == len(requests)
        streaming.use_stream = False
        for obs, reply in zip(batches, replies, strict=True):
            logits, values = codec.predictions_from_proto(reply)
            unary = streaming.predict(obs)
            np.testing.assert_array_equal(logits, unary[0])
            np.testing.assert_array_equal(values, unary[1])

    def test_client_predict_goes_over_the_stream(self, streaming: NetClient) -> None:
        assert streaming.streaming
        batches = [self.make_obs(n, seed=n) for n in (2, 3, 4)]
        pending = [streaming.predict_async(obs) for obs in batches]  # all in flight
        logits = [p.result()[0] for p in pending]
        streaming.use_stream = False
        for obs, got in zip(batches, logits, strict=True):
            np.testing.assert_array_equal(got, streaming.predict(obs)[0])

    def test_a_refused_request_ends_the_stream_with_predicts_status(
        self, streaming: NetClient, endpoint: Endpoint, channel: object
    ) -> None:
        good = codec.observations_to_proto(self.make_obs(2))
        bad = codec.observations_to_proto(np.zeros((3, self.obs_dim + 1), np.float32))
        replies: list[net_pb2.Predictions] = []
        send = [good, bad, good]

        def call() -> None:
            act_raw(channel, send, endpoint.metadata(), replies)  # type: ignore[arg-type]

        expect_error(INVALID_ARGUMENT, call, "obs", f"[3, {self.obs_dim + 1}]")
        assert len(replies) == 1, "the requests after the refused one were answered"
        assert streaming.predict(self.make_obs(2))[0].shape == (2, sum(self.head_sizes))

    @fresh_server
    def test_act_before_init(self, client: NetClient, endpoint: Endpoint, channel: object) -> None:
        request = codec.observations_to_proto(self.make_obs(2))
        with pytest.raises(NetError) as info:
            act_raw(channel, [request], endpoint.metadata())  # type: ignore[arg-type]
        if info.value.code == UNIMPLEMENTED and not client.init(self.make_cfg()).act_stream:
            pytest.skip("this implementation offers only unary Predict (act_stream false)")
        assert info.value.code == FAILED_PRECONDITION, str(info.value)
        assert re.search(r"\bInit\b", info.value.message), info.value.message

    def test_the_stream_stays_open_across_init(
        self, streaming: NetClient, endpoint: Endpoint, channel: object
    ) -> None:
        """A stream open for a whole run: Init (and SetParams) on other calls apply to the
        requests that follow."""
        obs = self.make_obs(4, seed=5)
        stream = streaming._open_stream()
        first = streaming.predict(obs)[0]
        streaming.train(1, self.make_sequences(streaming))
        trained = streaming.predict(obs)[0]
        streaming.init(self.make_cfg())
        again = streaming.predict(obs)[0]
        assert streaming._open_stream() is stream, "the stream was reopened"
        streaming.use_stream = False
        np.testing.assert_array_equal(again, first)
        streaming.train(1, self.make_sequences(streaming))
        np.testing.assert_array_equal(streaming.predict(obs)[0], trained)
        if self.trainable:
            assert not np.array_equal(trained, first)
