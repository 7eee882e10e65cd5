"""The gRPC server: tokens, TLS, mutual TLS, error mapping, locking, shutdown, reflection."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from casi_learner.scripted import ScriptedNet
from casi_learner.server import build_server, serving, shutdown
from casi_proto.client import NetClient
from casi_proto.compliance import NetContract
from casi_proto.errors import NetError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from ..conftest import make_test_ca

CFG = NetContract().make_cfg()  # obs_dim 10, heads [9, 5, 5]
OBS = np.zeros((2, 10), np.float32)


def error_of(call) -> NetError:  # type: ignore[no-untyped-def]
    with pytest.raises(NetError) as info:
        call()
    return info.value


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_ca(tmp_path_factory.mktemp("other-ca"))


# -- tokens ------------------------------------------------------------------------


@pytest.fixture
def token_address() -> Iterator[str]:
    with serving(ScriptedNet("honest"), token="s3cret") as address:
        yield address


def test_missing_token_is_unauthenticated(token_address: str) -> None:
    with NetClient(token_address, name="a0") as client:
        err = error_of(lambda: client.init(CFG))
    assert err.code == "UNAUTHENTICATED"
    assert "requires a token" in err.message and "authorization: Bearer" in err.message


def test_wrong_token_is_unauthenticated(token_address: str) -> None:
    for wrong in ("s3cre", "s3cret!", "S3CRET"):
        with NetClient(token_address, token=wrong) as client:
            err = error_of(lambda c=client: c.predict(OBS))
        assert err.code == "UNAUTHENTICATED"
        assert "does not match" in err.message


def test_malformed_authorization_is_unauthenticated(token_address: str) -> None:
    with grpc.insecure_channel(token_address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1
        from casi.v1 import net_pb2, net_pb2_grpc

        net = net_pb2_grpc.NetStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            net.GetParams(net_pb2.Empty(), metadata=(("authorization", "s3cret"),), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "Bearer <token>" in info.value.details()


def test_right_token_works_and_health_needs_none(token_address: str) -> None:
    with NetClient(token_address) as anonymous:
        anonymous.wait_ready(5)
        assert anonymous.health() == "SERVING"
    with NetClient(token_address, token="s3cret") as client:
        client.init(CFG)
        assert client.predict(OBS)[0].shape == (2, 19)


def test_reflection_lists_the_services() -> None:
    with serving(ScriptedNet("silent")) as address, grpc.insecure_channel(address) as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"casi.v1.Net", "grpc.health.v1.Health"} <= services


# -- TLS -----------------------------------------------------------------------------


def test_tls(certs: Path, other_certs: Path) -> None:
    kw = {"tls_cert": certs / "server.pem", "tls_key": certs / "server.key"}
    with serving(ScriptedNet("honest"), **kw) as address:
        with NetClient(address, root_cert=certs / "ca.pem") as client:
            client.init(CFG)
            assert client.predict(OBS)[0].shape == (2, 19)
        with NetClient(address, root_cert=other_certs / "ca.pem", retries=0) as stranger:
            assert error_of(lambda: stranger.init(CFG)).code == "UNAVAILABLE"
        with NetClient(address, retries=0) as plaintext:
            assert error_of(lambda: plaintext.init(CFG)).code == "UNAVAILABLE"


def test_mutual_tls(certs: Path, other_certs: Path) -> None:
    kw = {
        "tls_cert": certs / "server.pem",
        "tls_key": certs / "server.key",
        "tls_client_ca": certs / "ca.pem",
    }
    with serving(ScriptedNet("honest"), **kw) as address:
        with NetClient(
            address,
            root_cert=certs / "ca.pem",
            client_cert=certs / "client.pem",
            client_key=certs / "client.key",
        ) as client:
            client.init(CFG)
            assert client.predict(OBS)[0].shape == (2, 19)
        with NetClient(address, root_cert=certs / "ca.pem") as no_cert:
            assert error_of(lambda: no_cert.init(CFG)).code == "UNAVAILABLE"
        with NetClient(
            address,
            root_cert=certs / "ca.pem",
            client_cert=other_certs / "client.pem",
            client_key=other_certs / "client.key",
        ) as foreign_cert:
            assert error_of(lambda: foreign_cert.init(CFG)).code == "UNAVAILABLE"


def test_tls_options_must_go_together(certs: Path) -> None:
    with pytest.raises(ValueError, match="both a certificate and its key"):
        build_server(ScriptedNet("honest"), tls_cert=certs / "server.pem")
    with pytest.raises(ValueError, match="tls-client-ca"):
        build_server(ScriptedNet("honest"), tls_client_ca=certs / "ca.pem")


# -- error mapping and robustness ------------------------------------------------------


class BrokenNet(ScriptedNet):
    """Predict raises a plain exception; GetParams a NetError with a code gRPC lacks."""

    def predict(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise ZeroDivisionError("division by zero in the model")

    def get_params(self):  # type: ignore[no-untyped-def]
        raise NetError("NOT_A_CODE", "made-up code")


def test_unexpected_exceptions_become_internal_and_the_server_lives_on() -> None:
    with serving(BrokenNet("honest")) as address, NetClient(address, name="b") as client:
        client.init(CFG)
        for _ in range(3):
            err = error_of(lambda: client.predict(OBS))
            assert err.code == "INTERNAL"
            assert "Predict failed inside the learner (ZeroDivisionError: division by zero" in (
                err.message
            )
        assert error_of(client.get_params).code == "INTERNAL"
        client.init_hidden(2)  # still serving
        assert client.health() == "SERVING"


class CountingNet(ScriptedNet):
    """Records how many calls are inside predict at once."""

    def __init__(self) -> None:
        super().__init__("honest")
        self.inside = 0
        self.most = 0

    def predict(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.inside += 1
        self.most = max(self.most, self.inside)
        time.sleep(0.02)
        self.inside -= 1
        return super().predict(obs)


def test_calls_into_the_net_are_serialised() -> None:
    net = CountingNet()
    with serving(net) as address, NetClient(address) as client:
        client.init(CFG)
        with futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: client.predict(OBS), range(16)))
    assert len(results) == 16 and net.most == 1


def test_bind_failure_names_the_address() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot bind 127.0.0.1:{port}"):
            build_server(ScriptedNet("honest"), "127.0.0.1", port)


# -- shutdown ------------------------------------------------------------------------


class SlowNet(ScriptedNet):
    """A Predict that takes 0.8 s and says when it has started."""

    def __init__(self, policy: str) -> None:
        super().__init__(policy)
        self.entered = threading.Event()

    def predict(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.entered.set()
        time.sleep(0.8)
        return super().predict(obs)


def test_shutdown_goes_not_serving_and_lets_the_call_in_flight_finish() -> None:
    slow = SlowNet("honest")
    server, port, health = build_server(slow, "127.0.0.1", 0)
    address = f"127.0.0.1:{port}"
    statuses: list[str] = []
    with grpc.insecure_channel(address) as channel, NetClient(address) as client:
        client.init(CFG)
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())

        watching = threading.Event()

        def follow() -> None:
            for reply in watch:
                statuses.append(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
                watching.set()
                if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    return

        follower = threading.Thread(target=follow)
        follower.start()
        assert watching.wait(timeout=10), "the health Watch never answered"
        with futures.ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(client.predict, OBS)
            assert slow.entered.wait(timeout=10), "Predict never reached the server"
            t0 = time.monotonic()
            shutdown(server, health, grace=5.0)
            stopped_after = time.monotonic() - t0
            logits, _ = in_flight.result(timeout=5)
        follower.join(timeout=5)
        watch.cancel()
        assert logits.shape == (2, 19)
        assert statuses == ["SERVING", "NOT_SERVING"]
        assert 0.3 < stopped_after < 4.0  # waited for the call, not for the whole grace
        with NetClient(address, retries=0) as late:
            assert error_of(lambda: late.init(CFG)).code == "UNAVAILABLE"
