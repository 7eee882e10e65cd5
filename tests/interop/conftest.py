"""The Node/TypeScript Net of interop/node as real processes: built once (``make interop`` does
it too), started on free loopback ports, killed at the end. ``node_nets`` starts a process
for one test; ``node_net`` gives one shared with every test of the session that asks for the
same command line, for tests that begin with Init (a start costs about as much as the rest of
a contract test).

Every test here skips, saying why, when ``node`` or ``npm`` is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..conftest import ROOT, ServerProcess

NODE_DIR = ROOT / "interop" / "node"
MAIN = NODE_DIR / "dist" / "main.js"
READY = re.compile(r"casi-node-net ready on (\S+) ")
BUILD_WAIT = 600.0  # s for npm ci and tsc on a busy machine


def missing_tool() -> str | None:
    """Why the Node project cannot be built or run here, or None."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install nodejs npm); tests/interop needs it"
    return None


def stale() -> bool:
    """True if dist/main.js is missing or older than a source file, the lockfile or tsconfig."""
    if not MAIN.exists():
        return True
    sources = [
        *NODE_DIR.glob("src/*.ts"),
        NODE_DIR / "tsconfig.json",
        NODE_DIR / "package-lock.json",
    ]
    built = MAIN.stat().st_mtime
    return any(s.stat().st_mtime > built for s in sources)


def build() -> None:
    """npm ci (when node_modules is missing) and npm run build, as ``make interop`` does."""
    steps = [["npm", "run", "build"]]
    if not (NODE_DIR / "node_modules" / ".package-lock.json").exists():
        steps.insert(0, ["npm", "ci", "--no-audit", "--no-fund"])
    for step in steps:
        done = subprocess.run(
            step, cwd=NODE_DIR, capture_output=True, text=True, timeout=BUILD_WAIT, check=False
        )
        if done.returncode != 0:
            raise AssertionError(
                f"{' '.join(step)} in {NODE_DIR} failed:\n{done.stdout}{done.stderr}"
            )


@pytest.fixture(scope="session")
def node_net_built() -> Path:
    """interop/node/dist/main.js, built if it is missing or stale."""
    reason = missing_tool()
    if reason is not None and os.environ.get("CASI_REQUIRE_NODE") == "1":
        pytest.fail(f"{reason} (CASI_REQUIRE_NODE=1: CI runs these tests, it must not skip them)")
    if reason is not None:
        pytest.skip(reason)
    if stale():
        build()
    return MAIN


class NodeNet(ServerProcess):
    """A ``casi-node-net`` process; ``address`` is what its ready line says."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, log: Path | None = None
    ) -> None:
        super().__init__(["node", str(MAIN)], "casi-node-net", READY, args, env, log)


@pytest.fixture
def node_nets(node_net_built: Path) -> Iterator[Callable[..., NodeNet]]:
    """Starts casi-node-net processes; every one still running is killed at the end."""
    started: list[NodeNet] = []

    def start(*args: str, env: dict[str, str] | None = None) -> NodeNet:
        started.append(NodeNet(*args, env=env))
        return started[-1]

    yield start
    for net in started:
        net.kill()


class SharedNodeNets:
    """One casi-node-net process per command line and environment, started when first asked
    for and then given to every test that asks for the same: a test that begins with Init
    sees what a fresh process would show it (Init builds the model, step and state anew)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.nets: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], NodeNet] = {}
        self.started = 0

    def get(self, *args: str, env: dict[str, str] | None = None) -> NodeNet:
        key = (args, tuple(sorted((env or {}).items())))
        net = self.nets.get(key)
        if net is None or net.proc.poll() is not None:
            self.started += 1
            log = self.logs / f"node-net-{self.started}.log"
            net = self.nets[key] = NodeNet(*args, env=env, log=log)
        return net

    def check(self, net: NodeNet) -> None:
        """Fails if ``net`` died (the next test that asks for it gets a new process)."""
        if net.proc.poll() is not None:
            net.kill()
            raise AssertionError(
                f"casi-node-net {net.args} (shared between tests) died with exit status "
                f"{net.proc.returncode}:\n{net.err[-3000:]}"
            )

    def close(self) -> None:
        for net in self.nets.values():
            net.kill()


@pytest.fixture(scope="session")
def shared_node_nets(
    node_net_built: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedNodeNets]:
    nets = SharedNodeNets(tmp_path_factory.mktemp("node-nets"))
    yield nets
    nets.close()


@pytest.fixture
def node_net(shared_node_nets: SharedNodeNets) -> Iterator[Callable[..., NodeNet]]:
    """Gives casi-node-net processes shared with other tests (:class:`SharedNodeNets`), for a
    test whose first call is a successful Init; fails the test if one of them died in it."""
    used: list[NodeNet] = []

    def get(*args: str, env: dict[str, str] | None = None) -> NodeNet:
        used.append(shared_node_nets.get(*args, env=env))
        return used[-1]

    yield get
    for net in used:
        shared_node_nets.check(net)
