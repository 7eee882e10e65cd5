"""Tokens: refused on the metadata alone, before the message is read; an empty token is refused."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from casi_learner.scripted import ScriptedNet
from casi_learner.server import build_server
from casi_proto.client import NetClient

from ..conftest import ROOT, LearnerProcess

BIG = 200 * 1024 * 1024  # bytes of the unauthenticated message
SLACK = 100 * 1024 * 1024  # what the learner's peak memory may grow by while refusing it


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    assert match, status
    return int(match.group(1)) * 1024


@pytest.mark.skipif(sys.platform != "linux", reason="/proc/PID/status")
def test_unauthenticated_200_mb_message_is_refused_before_it_is_read() -> None:
    learner = LearnerProcess(
        "--policy", "honest", "--max-message-mb", "256", env={"CASI_TOKEN": "t"}
    )
    try:
        with NetClient(learner.address, token="t") as client:
            client.wait_ready(60.0)
        before = peak_rss(learner.pid)
        with grpc.insecure_channel(learner.address) as channel:
            set_params = channel.unary_unary("/casi.v1.Net/SetParams")
            with pytest.raises(grpc.RpcError) as info:
                set_params(bytes(BIG), timeout=60.0)
        after = peak_rss(learner.pid)
    finally:
        learner.kill()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value.details()
    assert "requires a token" in info.value.details()
    grown = (after - before) / 2**20
    print(f"peak RSS {before / 2**20:.0f} MB -> {after / 2**20:.0f} MB")
    assert after - before < SLACK, f"refusing a 200 MB message raised the peak by {grown:.0f} MB"


def test_empty_token_is_refused_at_start() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CASI_TOKEN"}
    for args, extra in (((("--token", "")), {}), ((), {"CASI_TOKEN": ""})):
        run = subprocess.run(
            [sys.executable, "-m", "casi_learner", "--policy", "honest", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**env, **extra},
            timeout=60,
        )
        assert run.returncode == 2, (args, extra, run.stderr)
        assert "empty token" in run.stderr and run.stdout == "", run.stderr


def test_build_server_refuses_an_empty_token() -> None:
    with pytest.raises(ValueError, match="empty token"):
        build_server(ScriptedNet("honest"), token="")
