"""Multi-host without Docker: each learner in its own network namespace, with its own address.

Each namespace gets one veth pair and a /30 of 10.231.7.0/24 (the host end .1, .5, ...; the
learner .2, .6, ...); these addresses exist only inside what the test creates, and all traffic
goes to them. ``casi-learner --host <its address> --token T`` runs inside its namespace
(``ip netns exec``), and ``casi run`` drives both from the host with token auth. Needs root and
``ip``; skipped otherwise. Namespaces and processes are removed even when the test fails.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import RUN_WAIT, START_WAIT

ROOT = Path(__file__).resolve().parents[2]
CASI = [sys.executable, "-m", "casi_orchestrator"]
SUBNET = "10.231.7"
TOKEN = "netns-test-token"
PORT = 50051
IP = shutil.which("ip")
pytestmark = pytest.mark.expensive  # two learners and a run

CONFIG = """\
# Two decentralised learners, one per namespace (exp4's game, a few small iterations).
seed = 0
agents = [{ name = "alice", kind = "learner" }, { name = "bob", kind = "learner" }]
max_steps = 10
attrs = { count = 4, direct = 2, goal = 1, values = 4 }
[algorithm]
batch = 64
iterations = 3
hidden_sizes = [32]
[eval]
every = 3
episodes = 64
[learners]
start_timeout = 30
"""


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    assert IP is not None
    return subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)


def _skip_reason() -> str | None:
    if sys.platform != "linux" or IP is None:
        return "needs Linux and the `ip` command (iproute2)"
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns add)"
    used = ip("-4", "-o", "addr", "show")
    if f" {SUBNET}." in used.stdout:
        return f"{SUBNET}.0/24 is already in use on this host"
    probe = f"casi-probe-{os.getpid()}"
    added = ip("netns", "add", probe)
    if added.returncode != 0:
        return f"cannot create a network namespace here: {added.stderr.strip()}"
    ip("netns", "del", probe)
    return None


class Namespaces:
    """``n`` namespaces, each with a veth pair and a /30 (:meth:`create`, :meth:`close`)."""

    def __init__(self, n: int) -> None:
        tag = os.getpid() % 100000
        self.names = [f"casi-t{tag}-{i}" for i in range(n)]
        self.veths = [f"cv{tag}h{i}" for i in range(n)]
        self.addresses = [f"{SUBNET}.{4 * i + 2}" for i in range(n)]
        self.created: list[str] = []

    def create(self) -> None:
        for i, (ns, veth) in enumerate(zip(self.names, self.veths, strict=True)):
            host, inner = f"{SUBNET}.{4 * i + 1}/30", f"{self.addresses[i]}/30"
            self._run("netns", "add", ns)
            self.created.append(ns)
            self._run("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._run("addr", "add", host, "dev", veth)
            self._run("link", "set", veth, "up")
            self._run("-n", ns, "addr", "add", inner, "dev", "eth0")
            self._run("-n", ns, "link", "set", "eth0", "up")
            self._run("-n", ns, "link", "set", "lo", "up")

    @staticmethod
    def _run(*args: str) -> None:
        done = ip(*args)
        assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr}"

    def close(self) -> None:
        for ns in self.created:  # deleting a namespace deletes its end of the veth pair
            ip("netns", "del", ns)
        for veth in self.veths:
            if ip("link", "show", veth).returncode == 0:
                ip("link", "del", veth)


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    spaces = Namespaces(2)
    try:
        spaces.create()
        yield spaces
    finally:
        spaces.close()


@pytest.fixture
def learners(namespaces: Namespaces) -> Iterator[list[str]]:
    """A torch casi-learner inside each namespace, bound to that namespace's address."""
    assert IP is not None
    procs: list[subprocess.Popen[str]] = []
    addresses = []
    try:
        for ns, host in zip(namespaces.names, namespaces.addresses, strict=True):
            proc = subprocess.Popen(
                [IP, "netns", "exec", ns, sys.executable, "-m", "casi_learner",
                 "--host", host, "--port", str(PORT), "--token", TOKEN, "--threads", "1"],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            procs.append(proc)
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], START_WAIT)
            line = proc.stdout.readline() if ready else ""
            assert re.match(rf"casi-learner ready on {re.escape(host)}:{PORT} ", line), line
            addresses.append(f"{host}:{PORT}")
        yield addresses
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            else:  # a token was given: no warning about binding a non-loopback address
                assert "without --token" not in err
                assert proc.returncode == 0, err[-2000:]


def test_two_learners_in_their_own_namespaces_with_token_auth(
    tmp_path: Path, learners: list[str]
) -> None:
    cfg = tmp_path / "netns.toml"
    cfg.write_text(CONFIG)
    flags = ["--learner", f"alice={learners[0]}", "--learner", f"bob={learners[1]}"]
    env = {k: v for k, v in os.environ.items() if k != "CASI_TOKEN"}
    refused = subprocess.run(
        [*CASI, "run", str(cfg), *flags, "--out", str(tmp_path / "refused")],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_WAIT, env=env,
    )  # fmt: skip
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert "this learner requires a token" in refused.stderr
    assert re.search(r"agent (alice|bob) at 10\.231\.7\.\d+:50051", refused.stderr)

    proc = subprocess.run(
        [*CASI, "run", str(cfg), *flags, "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_WAIT,
        env={**env, "CASI_TOKEN": TOKEN},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    trial = tmp_path / "netns" / "trial-0"
    start = json.loads((trial / "events.jsonl").read_text().splitlines()[0])
    assert {n: start["learners"][n]["address"] for n in ("alice", "bob")} == {
        "alice": learners[0],
        "bob": learners[1],
    }
    assert all("torch" in start["learners"][n]["implementation"] for n in ("alice", "bob"))
    rows = (trial / "iterations.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[-1].startswith("3,")
    assert not list((tmp_path / "netns").glob("learner-*.log"))  # no local learner was started
