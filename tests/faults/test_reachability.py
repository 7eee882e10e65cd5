"""Learners given by address: one without the health service, none at all, a slow one."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from casi.v1 import net_pb2_grpc
from casi_learner.scripted import ScriptedNet
from casi_learner.server import NetServicer, build_server, shutdown
from casi_orchestrator.config import LearnersCfg
from casi_orchestrator.learners import LearnerPool, LearnerStartError
from casi_proto.compliance import NetContract
from grpc_health.v1 import health_pb2

from .conftest import free_port


def bare_server(with_net: bool) -> tuple[grpc.Server, str]:
    """A started gRPC server with only the Net service (or with no service at all)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    if with_net:
        net_pb2_grpc.add_NetServicer_to_server(NetServicer(ScriptedNet("honest")), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def net_only() -> Iterator[str]:
    server, address = bare_server(with_net=True)
    yield address
    server.stop(0)


def pool(tmp_path: Path, start_timeout: float = 60.0) -> LearnerPool:
    return LearnerPool(LearnersCfg(start_timeout=start_timeout), tmp_path)


def test_a_net_only_learner_plugs_in_with_one_warning(
    net_only: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    with caplog.at_level(logging.WARNING), pool(tmp_path) as learners:
        net = learners.open("a0", net_only).net
        assert time.monotonic() - started < 10.0
        net.init(NetContract().make_cfg())
        assert net.predict(np.zeros((2, 10), np.float32))[0].shape[0] == 2
        assert net.health() == "SERVING"
        net.wait_ready(5.0)
    warnings = [r.getMessage() for r in caplog.records if "health service" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "agent a0 at" in warnings[0] and "checked with Net calls" in warnings[0]


def test_a_server_without_net_nor_health_is_refused_at_once(tmp_path: Path) -> None:
    server, address = bare_server(with_net=False)
    started = time.monotonic()
    try:
        with pool(tmp_path) as learners, pytest.raises(LearnerStartError) as info:
            learners.open("a0", address)
    finally:
        server.stop(0)
    assert time.monotonic() - started < 10.0
    message = str(info.value)
    assert "'a0'" in message and address in message
    assert "neither the gRPC health service nor casi.v1.Net" in message


def test_a_refused_loopback_address_fails_at_once(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pool(tmp_path) as learners, pytest.raises(LearnerStartError) as info:
        learners.open("a0", address)
    assert time.monotonic() - started < 5.0
    assert "nothing listens there (connection refused)" in str(info.value)
    assert address in str(info.value)


@pytest.mark.expensive
def test_a_slow_learner_is_reported_while_waited_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, port, health = build_server(ScriptedNet("honest"))
    address = f"127.0.0.1:{port}"
    health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)  # up, but still loading, say
    later = threading.Timer(12.0, health.set, ("", health_pb2.HealthCheckResponse.SERVING))
    later.start()
    try:
        with pool(tmp_path, start_timeout=60.0) as learners:
            learners.open("a0", address)
    finally:
        later.cancel()
        shutdown(server, health, grace=1.0)
    err = capsys.readouterr().err
    assert f"still waiting for the learner of agent 'a0' at {address}" in err
    assert "health status NOT_SERVING" in err
