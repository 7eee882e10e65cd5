"""The casi-node-net process: its ready line, SIGTERM, and the mistakes of a command line."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from .conftest import MAIN, NodeNet


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", str(MAIN), *args], capture_output=True, text=True, timeout=60)


def test_sigterm_stops_it_with_exit_status_0(node_nets: Callable[..., NodeNet]) -> None:
    net = node_nets("--policy", "honest")
    assert net.address.startswith("127.0.0.1:")
    assert net.kill(signal.SIGTERM) == 0, net.err


def test_a_bad_command_line_is_refused_by_name(node_net_built: Path) -> None:
    for args, words in [
        (["--policy", "torch"], "--policy: expected one of linear, honest"),
        (["--port", "70000"], "--port: expected 0..65535, got 70000"),
        (["--bogus"], "'--bogus'"),
    ]:
        done = run(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr and "usage:" in done.stderr, done.stderr


def test_a_taken_port_is_refused_with_its_address(node_nets: Callable[..., NodeNet]) -> None:
    taken = node_nets().address
    done = run("--port", taken.rsplit(":", 1)[1])
    assert done.returncode == 1, done.stderr
    assert f"cannot bind {taken}" in done.stderr
