"""NetClient against real servers: deadlines, bounded retries, readiness, message limits."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from casi.v1 import net_pb2_grpc
from casi_learner.scripted import ScriptedNet
from casi_learner.server import build_server, serving, shutdown
from casi_proto import codec
from casi_proto.api import Params
from casi_proto.client import NetClient
from casi_proto.compliance import NetContract
from casi_proto.errors import NetError

CFG = NetContract().make_cfg()  # obs_dim 10, heads [9, 5, 5]


class SlowNet(ScriptedNet):
    """The honest policy, but Predict takes `delay` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__("honest")
        self.delay = delay

    def predict(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(self.delay)
        return super().predict(obs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def address() -> Iterator[str]:
    with serving(ScriptedNet("honest")) as address:
        yield address


def start_later(port: int, delay: float) -> list:  # type: ignore[type-arg]
    """Start an honest server on `port` after `delay` s; the list receives (server, health)."""
    started: list = []  # type: ignore[type-arg]

    def run() -> None:
        time.sleep(delay)
        server, _, health = build_server(ScriptedNet("honest"), "127.0.0.1", port)
        started.append((server, health))

    threading.Thread(target=run, daemon=True).start()
    return started


def test_round_trip_through_the_net_interface(address: str) -> None:
    with NetClient(address, name="a0") as client:
        client.wait_ready(5)
        assert client.health() == "SERVING"
        reply = client.init(CFG)
        assert reply.implementation.startswith("casi-learner/scripted-honest")
        logits, values = client.predict(np.zeros((2, 10), np.float32))
        assert logits.shape == (2, 19) and values.shape == (2,)
        client.set_params(Params({}, {}, 5))
        assert client.get_params() == Params({}, {}, 5)


def test_unreachable_wait_ready_names_agent_and_address() -> None:
    address = f"127.0.0.1:{free_port()}"
    with NetClient(address, name="a1") as client:
        t0 = time.monotonic()
        with pytest.raises(NetError) as info:
            client.wait_ready(0.5)
        elapsed = time.monotonic() - t0
    assert info.value.code == "UNAVAILABLE"
    assert info.value.message.startswith(f"agent a1 at {address}: not reachable after 0.5 s")
    assert 0.5 <= elapsed < 2.0


def test_wait_ready_sees_a_server_that_starts_late() -> None:
    port = free_port()
    started = start_later(port, 0.6)
    with NetClient(f"127.0.0.1:{port}") as client:
        client.wait_ready(10)
        assert client.health() == "SERVING"
    server, health = started[0]
    shutdown(server, health, 0)


def test_predict_is_retried_until_the_learner_is_up() -> None:
    port = free_port()
    started = start_later(port, 0.5)
    with NetClient(f"127.0.0.1:{port}", name="a2", retries=5, retry_backoff=0.2) as client:
        # the fresh server answers FAILED_PRECONDITION (no Init yet): the retry reached it
        with pytest.raises(NetError) as info:
            client.predict(np.zeros((1, 10), np.float32))
        assert info.value.code == "FAILED_PRECONDITION", str(info.value)
        client.init(CFG)
        assert client.predict(np.zeros((1, 10), np.float32))[0].shape == (1, 19)
    server, health = started[0]
    shutdown(server, health, 0)


def test_retries_are_bounded_and_only_for_safe_calls() -> None:
    address = f"127.0.0.1:{free_port()}"
    with NetClient(address, name="a3", retries=2, retry_backoff=0.2) as client:
        t0 = time.monotonic()
        with pytest.raises(NetError) as info:
            client.get_params()
        assert info.value.code == "UNAVAILABLE"
        assert "GetParams: not reachable after 3 attempt(s)" in info.value.message
        assert time.monotonic() - t0 >= 0.2 + 0.4
        t0 = time.monotonic()
        with pytest.raises(NetError) as info:
            client.init(CFG)
        assert "Init: not reachable after 1 attempt(s)" in info.value.message
        with pytest.raises(NetError) as info:
            client.set_params(Params({}, {}, 0))
        assert "SetParams: not reachable after 1 attempt(s)" in info.value.message
        assert time.monotonic() - t0 < 0.2


def test_a_hung_learner_fails_the_call_at_the_deadline() -> None:
    with serving(SlowNet(delay=1.5)) as address:
        with NetClient(address, name="a4", timeout=0.3) as client:
            client.init(CFG)
            t0 = time.monotonic()
            with pytest.raises(NetError) as info:
                client.predict(np.zeros((1, 10), np.float32))
            elapsed = time.monotonic() - t0
    assert info.value.code == "DEADLINE_EXCEEDED"
    assert info.value.message == (
        f"agent a4 at {address}: Predict: no reply within the deadline of 0.3 s"
    )
    assert elapsed < 1.0  # not retried


def test_message_limits_are_raised_and_configurable() -> None:
    cfg = NetContract().make_cfg(obs_dim=100)
    big = np.zeros((15_000, 100), np.float32)  # 6 MB, above gRPC's 4 MB default
    with serving(ScriptedNet("silent")) as address, NetClient(address) as client:
        client.init(cfg)
        assert client.predict(big)[0].shape == (15_000, 19)
        with NetClient(address, name="small", max_message_mb=1) as small:
            with pytest.raises(NetError) as info:
                small.predict(big)
    assert info.value.code == "RESOURCE_EXHAUSTED"
    assert "max_message_mb" in info.value.message
    with serving(ScriptedNet("silent"), max_message_mb=1) as address, NetClient(address) as client:
        client.init(cfg)
        with pytest.raises(NetError) as info:
            client.predict(big)
    assert info.value.code == "RESOURCE_EXHAUSTED"


def test_client_refuses_unencodable_input_before_sending(address: str) -> None:
    with NetClient(address, name="a5") as client:
        client.init(CFG)
        with pytest.raises(NetError) as info:
            client.predict(np.zeros((1, 10), np.complex64))
    assert info.value.code == "INVALID_ARGUMENT"
    assert info.value.message.startswith(f"agent a5 at {address}: Predict: obs: dtype complex64")


def test_client_cert_without_key_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="client_key"):
        NetClient("127.0.0.1:1", client_cert=b"x")


def test_errors_name_the_agent_then_carry_the_servers_sentence(address: str) -> None:
    obs = np.zeros((2, 10), np.float32)
    with grpc.insecure_channel(address) as channel:
        stub = net_pb2_grpc.NetStub(channel)
        with pytest.raises(grpc.RpcError) as raw:
            stub.Predict(codec.observations_to_proto(obs), timeout=5)
    with NetClient(address, name="contract") as client:
        with pytest.raises(NetError) as info:
            client.predict(obs)
    assert info.value.code == "FAILED_PRECONDITION"
    assert info.value.message == f"agent contract at {address}: Predict: {raw.value.details()}"


def test_a_given_channel_is_used_as_it_is(address: str) -> None:
    with NetClient(address, name="a6", channel=grpc.insecure_channel(address)) as client:
        client.init(CFG)
        assert client.predict(np.zeros((2, 10), np.float32))[0].shape == (2, 19)
    with pytest.raises(ValueError, match="either a channel or the TLS arguments"):
        NetClient(address, channel=grpc.insecure_channel(address), root_cert=b"x")


def delaying_proxy(target: str, delay: float) -> tuple[str, threading.Event]:
    """A loopback TCP proxy to ``target`` that holds the server's first bytes back ``delay`` s
    (a slow handshake: a busy host, a long link). Set the event to stop it."""
    host, port = target.rsplit(":", 1)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def pipe(src: socket.socket, dst: socket.socket, hold: float) -> None:
        first = True
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if first and hold:
                    time.sleep(hold)
                first = False
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            server = socket.create_connection((host, int(port)))
            threading.Thread(target=pipe, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(target=pipe, args=(server, client, delay), daemon=True).start()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"127.0.0.1:{listener.getsockname()[1]}", stop


def test_a_slow_handshake_still_connects(address: str) -> None:
    # gRPC takes grpc.min_reconnect_backoff_ms as its connect timeout too: with 100 ms there,
    # a server whose first bytes came 0.3 s late was refused as "connection attempt timed out
    # before receiving SETTINGS frame"
    proxy, stop = delaying_proxy(address, 0.3)
    try:
        with NetClient(proxy, name="a0", timeout=20.0) as client:
            reply = client.init(CFG)
        assert reply.implementation
    finally:
        stop.set()
