"""casi-learner as a real subprocess: ready line, signals, torch-free scripted policies."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
from casi_proto.client import NetClient
from casi_proto.compliance import NetContract
from casi_proto.errors import NetError
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..conftest import START_WAIT, make_test_ca

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"casi-learner ready on (\S+) policy=(\S+) device=(\S+)\n")
CFG = NetContract().make_cfg()
# NetClient's first connection attempt gives up after ~0.1 s without the server's HTTP/2
# SETTINGS frame (grpc.min_reconnect_backoff_ms is also gRPC's connect timeout), and a call that
# is not retried then fails UNAVAILABLE, as happens on a busy machine. So every client first
# waits for the health check to say SERVING, which it retries for this long.
SERVING_WAIT = 60.0


class Learner:
    """A casi-learner subprocess, stopped at the end of the `with` block."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, python: tuple = ()) -> None:  # type: ignore[type-arg]
        cmd = [sys.executable, *python, "-m", "casi_learner", *args]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_WAIT)
        assert ready, f"no ready line within {START_WAIT:g} s"
        self.line = self.proc.stdout.readline()
        match = READY.fullmatch(self.line)
        assert match, f"unexpected first line {self.line!r}; stderr: {self.stderr()}"
        self.address, self.policy, self.device = match.groups()

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out, err

    def __enter__(self) -> Learner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)


def test_ready_line_port_zero_and_sigterm_goes_not_serving() -> None:
    with Learner("--policy", "honest", "--port", "0") as learner:
        host, port = learner.address.rsplit(":", 1)
        assert (host, learner.policy, learner.device) == ("127.0.0.1", "honest", "cpu")
        assert int(port) > 0
        with NetClient(learner.address) as client:
            client.wait_ready(SERVING_WAIT)
            client.init(CFG)
            assert client.predict(np.zeros((1, 10), np.float32))[0][0, 0] == 0.0
        statuses: list[int] = []
        with grpc.insecure_channel(learner.address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            first = next(watch)
            assert first.status == health_pb2.HealthCheckResponse.SERVING

            def follow() -> None:
                try:
                    for reply in watch:
                        statuses.append(reply.status)
                except grpc.RpcError:
                    pass  # the stream ends when the server stops

            follower = threading.Thread(target=follow)
            follower.start()
            code, out, err = learner.stop(signal.SIGTERM)
            follower.join(timeout=30)
    assert code == 0, err
    assert out == ""  # the ready line was the only line on stdout
    assert statuses[:1] == [health_pb2.HealthCheckResponse.NOT_SERVING]


def test_sigint_exits_0_and_casi_token_is_honoured() -> None:
    with Learner("--policy", "silent", env={"CASI_TOKEN": "tok"}) as learner:
        with NetClient(learner.address) as anonymous:
            anonymous.wait_ready(SERVING_WAIT)
            with pytest.raises(NetError) as info:
                anonymous.init(CFG)
            assert info.value.code == "UNAUTHENTICATED"
        with NetClient(learner.address, token="tok") as client:
            client.wait_ready(SERVING_WAIT)
            assert client.init(CFG).implementation.startswith("casi-learner/scripted-silent")
        code, _, err = learner.stop(signal.SIGINT)
    assert code == 0, err
    assert "warning" not in err


def test_scripted_policy_process_never_imports_torch() -> None:
    with Learner("--policy", "random", python=("-X", "importtime")) as learner:
        with NetClient(learner.address) as client:
            client.wait_ready(SERVING_WAIT)
            client.init(CFG)
            client.predict(np.zeros((1, 10), np.float32))
        code, _, err = learner.stop()
    assert code == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in err.splitlines() if "|" in line}
    assert "casi_learner.scripted" in imported and "grpc" in imported  # the probe works
    assert not {m for m in imported if m == "torch" or m.startswith("torch.")}


def test_importing_the_service_modules_does_not_import_torch() -> None:
    code = (
        "import sys, casi_learner.cli, casi_learner.server, casi_learner.scripted, "
        "casi_learner.auth, casi_proto.client, casi_proto.codec\n"
        "from casi_learner.cli import make_net, parse_args\n"
        "net, device = make_net(parse_args(['--policy', 'liar']))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_non_loopback_bind_without_token_warns() -> None:
    with Learner("--policy", "honest", "--host", "0.0.0.0") as learner:
        code, _, err = learner.stop()
    assert code == 0
    assert "warning: binding 0.0.0.0 without --token" in err


def test_usage_errors_exit_2_and_busy_port_exits_1() -> None:
    run = [sys.executable, "-m", "casi_learner", "--policy", "honest"]
    bad = subprocess.run([*run, "--tls-cert", "x.pem"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--tls-cert and --tls-key go together" in bad.stderr
    bad = subprocess.run([*run, "--policy", "oracle"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice: 'oracle'" in bad.stderr
    bad = subprocess.run([*run, "--keepalive-s", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--keepalive-s must be in [0.001, 86400], got 0.0" in bad.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        busy = subprocess.run(
            [*run, "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert busy.returncode == 1
    assert f"cannot bind 127.0.0.1:{port}" in busy.stderr and busy.stdout == ""


@pytest.mark.expensive  # imports torch in a new process
def test_cuda_without_a_gpu_exits_2_with_one_sentence() -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    run = [sys.executable, "-m", "casi_learner", "--port", "0", "--device", "cuda"]
    result = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "cuda" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_tls_from_the_command_line(tmp_path: Path) -> None:
    make_test_ca(tmp_path)
    args = [
        "--policy",
        "liar",
        "--tls-cert",
        str(tmp_path / "server.pem"),
        "--tls-key",
        str(tmp_path / "server.key"),
        "--tls-client-ca",
        str(tmp_path / "ca.pem"),
    ]
    with Learner(*args) as learner:
        with NetClient(
            learner.address,
            root_cert=tmp_path / "ca.pem",
            client_cert=tmp_path / "client.pem",
            client_key=tmp_path / "client.key",
        ) as client:
            client.wait_ready(SERVING_WAIT)
            assert client.init(CFG).device == "cpu"
        assert learner.stop()[0] == 0
