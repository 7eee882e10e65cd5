"""Contract tests of Init and InitHidden."""

from __future__ import annotations

import re
from functools import partial

import numpy as np
from casi.v1 import net_pb2

from casi_proto import PROTOCOL_VERSION, codec
from casi_proto.api import Params
from casi_proto.client import NetClient
from casi_proto.compliance.base import (
    ContractBase,
    RawCall,
    assert_params_equal,
    expect_error,
    fresh_server,
)
from casi_proto.errors import FAILED_PRECONDITION, INVALID_ARGUMENT


class InitContract(ContractBase):
    """Init builds a fresh model; InitHidden resets the recurrent state."""

    def test_init_reply(self, client: NetClient) -> None:
        reply = client.init(self.make_cfg())
        assert reply.protocol_version == PROTOCOL_VERSION
        assert reply.implementation and reply.device
        assert reply.n_params > 0 if self.has_params else reply.n_params >= 0

    @fresh_server
    def test_protocol_mismatch_names_both_versions(self, client: NetClient, raw: RawCall) -> None:
        other = PROTOCOL_VERSION + 41
        request = self.make_cfg(protocol_version=other)
        err = expect_error(FAILED_PRECONDITION, lambda: raw("Init", request), str(other))
        assert re.search(rf"\b{PROTOCOL_VERSION}\b", err.message), err.message
        client.init(self.make_cfg())  # the learner is still usable

    @fresh_server
    def test_bad_head_sizes_refused(self, raw: RawCall) -> None:
        request = self.make_cfg(head_sizes=[self.head_sizes[0], 0])
        expect_error(INVALID_ARGUMENT, lambda: raw("Init", request), "head_sizes")

    @fresh_server
    def test_predict_before_init(self, raw: RawCall) -> None:
        request = codec.observations_to_proto(self.make_obs(2))
        expect_error(FAILED_PRECONDITION, lambda: raw("Predict", request), "Init")

    @fresh_server
    def test_every_call_before_init_is_refused_by_a_sentence_naming_init(
        self, raw: RawCall
    ) -> None:
        # the server's own words (status details), which any client passes on
        requests = {
            "InitHidden": net_pb2.HiddenCfg(batch=1),
            "Predict": codec.observations_to_proto(self.make_obs(2)),
            "ResetOptimizer": self.make_cfg().optim,
            "Train": codec.sequences_to_proto(1, self.make_blank_sequences()),
            "GetParams": net_pb2.Empty(),
            "SetParams": net_pb2.Params(),
        }
        for method, request in requests.items():
            err = expect_error(FAILED_PRECONDITION, partial(raw, method, request))
            assert re.search(r"\bInit\b", err.message), f"{method}: {err.message!r}"

    def test_init_again_starts_fresh(self, ready: NetClient) -> None:
        first = ready.get_params()
        obs = self.make_obs(3)
        before = ready.predict(obs)
        ready.train(1, self.make_sequences(ready))
        ready.init(self.make_cfg())
        again = ready.get_params()
        assert again.version == 0
        assert_params_equal(
            Params(first.tensors, {}, first.version), Params(again.tensors, {}, again.version)
        )
        np.testing.assert_array_equal(ready.predict(obs)[0], before[0])
        ready.train(1, self.make_sequences(ready))  # step 1 is new again

    def test_init_hidden(self, ready: NetClient, raw: RawCall) -> None:
        ready.init_hidden(4)
        request = net_pb2.HiddenCfg(batch=0)
        expect_error(INVALID_ARGUMENT, lambda: raw("InitHidden", request), "batch")

    def test_feed_forward_predict_needs_no_init_hidden(self, ready: NetClient) -> None:
        # the orchestrator calls InitHidden for recurrent models only
        for batch in (3, 5):
            logits, values = ready.predict(self.make_obs(batch))
            assert logits.shape[0] == values.shape[0] == batch
        ready.init_hidden(4)
        assert ready.predict(self.make_obs(6))[1].shape == (6,)
