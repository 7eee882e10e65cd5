"""The Node/TypeScript Net of interop/node as real processes: built once (``make interop`` does
it too), started on free loopback ports, killed at the end.

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

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(["node", str(MAIN)], "casi-node-net", READY, args, env)


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
