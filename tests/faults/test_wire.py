"""Faults on the wire, through real gRPC: a lost Train reply, oversized and bad parameters."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import pytest
from casi.v1 import net_pb2, net_pb2_grpc
from casi_learner.server import NetServicer, serving
from casi_learner.torch_net import TorchNet
from casi_proto.api import Params
from casi_proto.client import NetClient
from casi_proto.compliance import NetContract, assert_params_equal, expect_error, raw_tensor

CONTRACT = NetContract()
CFG = CONTRACT.make_cfg()  # obs_dim 10, heads [9, 5, 5], hidden [16]


class LosesTrainReplies(NetServicer):
    """Applies every Train, then loses the reply of the first ``lose`` ones (UNAVAILABLE)."""

    def __init__(self, net: TorchNet, lose: int) -> None:
        super().__init__(net)
        self.lose = lose
        self.trains = 0

    def Train(self, request: net_pb2.Sequences, context: grpc.ServicerContext) -> Any:
        self.trains += 1
        reply = super().Train(request, context)
        if self.lose:
            self.lose -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost after the update")
        return reply


@pytest.fixture
def lossy() -> Iterator[tuple[NetClient, LosesTrainReplies]]:
    servicer = LosesTrainReplies(TorchNet("cpu", 1), lose=2)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    net_pb2_grpc.add_NetServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with NetClient(f"127.0.0.1:{port}", name="a0", retry_backoff=0.01) as client:
            yield client, servicer
    finally:
        server.stop(0).wait()


def test_a_train_retried_after_a_lost_reply_is_applied_once(
    lossy: tuple[NetClient, LosesTrainReplies],
) -> None:
    client, servicer = lossy
    client.init(CFG)
    batch = CONTRACT.make_sequences(client)
    reference = TorchNet("cpu", 1)  # the same update, applied exactly once, without gRPC
    reference.init(CFG)
    want_loss = reference.train(1, batch)

    loss = client.train(1, batch)  # the client retries after each lost reply
    assert servicer.trains == 3  # sent three times (two replies lost) ...
    assert loss == want_loss  # ... the loss of one update
    params = client.get_params()
    assert params.version == 1
    assert_params_equal(params, reference.get_params())  # ... and the parameters of one

    assert client.train(1, batch) == loss  # a late duplicate changes nothing either
    assert_params_equal(client.get_params(), params)
    client.train(2, CONTRACT.make_sequences(client, seed=1))
    assert client.get_params().version == 2


@pytest.fixture
def small_limit() -> Iterator[tuple[NetClient, Params]]:
    """A torch learner with a 1 MiB message limit, Init-ed and trained once; its params."""
    with serving(TorchNet("cpu", 1), max_message_mb=1) as address:
        with NetClient(address, name="a0") as client:
            client.init(CFG)
            client.train(1, CONTRACT.make_sequences(client))
            yield client, client.get_params()


def test_an_oversized_set_params_is_refused_and_changes_nothing(
    small_limit: tuple[NetClient, Params],
) -> None:
    client, before = small_limit
    huge = dict(before.tensors)
    huge["trunk.0.weight"] = np.zeros((70_000, 10), np.float32)  # 2.8 MB, above the 1 MiB limit
    err = expect_error(
        "RESOURCE_EXHAUSTED", lambda: client.set_params(before._replace(tensors=huge)), "agent a0"
    )
    assert "max_message_mb" in err.message
    assert_params_equal(client.get_params(), before)


def bad_params(before: Params) -> list[tuple[str, Params, str]]:
    t = before.tensors

    def change(key: str, value: np.ndarray) -> Params:
        return before._replace(tensors={**t, key: value})

    nan = t["trunk.0.weight"].copy()
    nan[3, 4] = np.inf
    return [
        (
            "larger than the model",
            change("trunk.0.weight", np.zeros((160, 10), np.float32)),
            "expected float32 [16, 10], got float32 [160, 10]",
        ),
        ("not finite", change("trunk.0.weight", nan), "expected finite values"),
        ("float64", change("value.bias", t["value.bias"].astype(np.float64)), "'value.bias'"),
        (
            "a foreign key",
            change("os.system", np.zeros(1, np.float32)),
            "unexpected key(s) 'os.system'",
        ),
    ]


def test_bad_set_params_are_refused_naming_the_tensor_and_change_nothing(
    small_limit: tuple[NetClient, Params],
) -> None:
    client, before = small_limit
    for label, params, words in bad_params(before):
        err = expect_error("INVALID_ARGUMENT", lambda p=params: client.set_params(p), words)
        assert err.message.startswith("agent a0 at "), label
        assert_params_equal(client.get_params(), before)


def test_a_tensor_whose_bytes_do_not_match_its_shape_is_refused(
    small_limit: tuple[NetClient, Params],
) -> None:
    client, before = small_limit
    channel = client._channel  # a message the client itself would never build
    stub = net_pb2_grpc.NetStub(channel)
    short = raw_tensor(net_pb2.DTYPE_FLOAT32, [16, 10], b"\0" * 100)
    with pytest.raises(grpc.RpcError) as info:
        stub.SetParams(net_pb2.Params(tensors={"trunk.0.weight": short}), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tensors[trunk.0.weight]: 100 bytes for float32 [16, 10] needs 640" in (
        info.value.details() or ""
    )
    assert_params_equal(client.get_params(), before)
