"""The Act stream beside unary Predict: capability, fallback, versions, errors, deadlines.

A server of only the unary rpcs (an older casi-learner, or one written from the proto of
minor 0) is built here from the generated base servicer, whose Act is UNIMPLEMENTED, and an
InitReply without the minor and the flag: it passes the contract suite and the client uses
unary Predict with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import pytest
from casi.v1 import net_pb2, net_pb2_grpc
from casi_learner.scripted import ScriptedNet
from casi_learner.server import NET_SERVICE, NetServicer, serving
from casi_proto import PROTOCOL_MINOR
from casi_proto.client import NetClient
from casi_proto.compliance import NetContract
from casi_proto.errors import NetError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .test_client import SlowNet

CFG = NetContract().make_cfg()  # obs_dim 10, heads [9, 5, 5]


class UnaryOnly(NetServicer):
    """A Net service of minor 0: no Act, an InitReply without protocol_minor or act_stream."""

    Act = net_pb2_grpc.NetServicer.Act

    def Init(self, request: net_pb2.NetCfg, context: grpc.ServicerContext) -> Any:
        reply = super().Init(request, context)
        reply.ClearField("protocol_minor")
        reply.ClearField("act_stream")
        return reply


class CountingUnaryOnly(UnaryOnly):
    predicts = 0

    def Predict(self, request: net_pb2.Observations, context: grpc.ServicerContext) -> Any:
        CountingUnaryOnly.predicts += 1
        return super().Predict(request, context)


def serve(servicer: NetServicer) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    net_pb2_grpc.add_NetServicer_to_server(servicer, server)
    checks = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    reflection.enable_server_reflection((NET_SERVICE, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    for service in ("", NET_SERVICE):
        checks.set(service, health_pb2.HealthCheckResponse.SERVING)
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def unary_only() -> Iterator[str]:
    server, address = serve(CountingUnaryOnly(ScriptedNet("honest")))
    yield address
    server.stop(0).wait()


class TestUnaryOnlyServer(NetContract):
    """The whole contract suite; the Act tests skip (the server does not offer the stream)."""

    trainable = False
    has_params = False

    @pytest.fixture
    def address(self) -> Iterator[str]:
        server, address = serve(UnaryOnly(ScriptedNet("honest")))
        yield address
        server.stop(0).wait()


def test_the_learner_offers_the_stream_and_names_its_minor() -> None:
    with serving(ScriptedNet("honest")) as address, NetClient(address) as client:
        reply = client.init(CFG)
        assert reply.act_stream and reply.protocol_minor == PROTOCOL_MINOR
        assert client.streaming
        client.predict(np.zeros((2, 10), np.float32))
        assert client._stream is not None and not client._stream.broken


def test_the_client_falls_back_to_unary_predict_and_warns_of_the_minor(
    unary_only: str, caplog: pytest.LogCaptureFixture
) -> None:
    CountingUnaryOnly.predicts = 0
    with NetClient(unary_only, name="old") as client, caplog.at_level(logging.WARNING):
        reply = client.init(CFG)
        client.init(CFG)
        assert not reply.act_stream and not client.streaming
        obs = np.random.default_rng(0).random((3, 10), dtype=np.float32)
        pending = [client.predict_async(obs), client.predict_async(obs)]
        assert [p.result()[0].shape for p in pending] == [(3, 19), (3, 19)]
    assert CountingUnaryOnly.predicts == 2
    warnings = [r.getMessage() for r in caplog.records if "protocol 1.0" in r.getMessage()]
    assert len(warnings) == 1, caplog.text  # once per client
    assert f"this client 1.{PROTOCOL_MINOR}" in warnings[0]
    assert "unary Predict" in warnings[0]


def test_a_server_of_another_major_version_is_refused() -> None:
    class Other(NetServicer):
        def Init(self, request: net_pb2.NetCfg, context: grpc.ServicerContext) -> Any:
            reply = super().Init(request, context)
            reply.protocol_version = 2
            return reply

    server, address = serve(Other(ScriptedNet("honest")))
    try:
        with NetClient(address, name="new") as client, pytest.raises(NetError) as info:
            client.init(CFG)
    finally:
        server.stop(0).wait()
    assert info.value.code == "FAILED_PRECONDITION"
    assert "protocol 2, this client 1" in info.value.message


def test_an_error_ends_the_stream_and_the_next_predict_opens_a_new_one() -> None:
    with serving(ScriptedNet("honest")) as address, NetClient(address, name="a1") as client:
        client.init(CFG)
        client.predict(np.zeros((2, 10), np.float32))
        first = client._stream
        with pytest.raises(NetError) as info:
            client.predict(np.zeros((2, 11), np.float32))
        assert info.value.code == "INVALID_ARGUMENT"
        assert info.value.message.startswith(f"agent a1 at {address}: Predict: ")
        assert "[2, 11]" in info.value.message
        assert first is not None and first.broken
        assert client.predict(np.zeros((2, 10), np.float32))[0].shape == (2, 19)
        assert client._stream is not first


def test_a_request_on_the_stream_has_the_deadline() -> None:
    with serving(SlowNet(delay=1.5)) as address:
        with NetClient(address, name="a4", timeout=0.3) as client:
            client.init(CFG)
            assert client.streaming
            t0 = time.monotonic()
            with pytest.raises(NetError) as info:
                client.predict(np.zeros((1, 10), np.float32))
            elapsed = time.monotonic() - t0
    assert info.value.code == "DEADLINE_EXCEEDED"
    assert info.value.message == (
        f"agent a4 at {address}: Predict: no reply within the deadline of 0.3 s"
    )
    assert elapsed < 1.0


def test_requests_from_several_threads_get_their_own_replies() -> None:
    with serving(ScriptedNet("random")) as address, NetClient(address) as client:
        client.init(CFG)
        rng = np.random.default_rng(1)
        batches = [rng.random((n, 10), dtype=np.float32) for n in range(1, 41)]
        shapes: dict[int, tuple[int, ...]] = {}

        def work(i: int) -> None:
            shapes[i] = client.predict(batches[i])[0].shape

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert shapes == {i: (i + 1, 19) for i in range(len(batches))}


def test_closing_the_client_leaves_no_stream_thread() -> None:
    def client_threads() -> set[threading.Thread]:  # not the server's workers
        return {t for t in threading.enumerate() if not t.name.startswith("casi-net")}

    before = client_threads()
    with serving(ScriptedNet("honest")) as address:
        with NetClient(address) as client:
            client.init(CFG)
            client.predict(np.zeros((2, 10), np.float32))
            assert any(t.name == "casi-act-deadline" for t in client_threads() - before)
    deadline = time.monotonic() + 10
    while client_threads() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not client_threads() - before
