"""`python -m casi_proto.health`, the container health probe, against a real server."""

from __future__ import annotations

import socket
import subprocess
import sys

from casi_learner.scripted import ScriptedNet
from casi_learner.server import serving


def probe(address: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "casi_proto.health", address, "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_probe_says_serving_with_exit_0_even_when_a_token_is_required():
    with serving(ScriptedNet("honest"), token="secret") as address:
        result = probe(address)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{address}: SERVING"


def test_probe_fails_with_exit_1_naming_the_address_when_nothing_listens():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    result = probe(address)
    assert result.returncode == 1
    assert address in result.stderr and "UNAVAILABLE" in result.stderr
