"""Real processes for the fault tests: casi-learner servers the tests start, kill and restart."""

from __future__ import annotations

import csv
import os
import re
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASI = [sys.executable, "-m", "casi_orchestrator"]
READY = re.compile(r"casi-learner ready on (\S+) ")


class LearnerProcess:
    """A ``casi-learner`` subprocess; ``address`` is what its ready line says."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.err = ""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "casi_learner", "--threads", "1", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if ready else ""
        match = READY.match(line)
        if match is None:
            self.kill()
            raise AssertionError(f"casi-learner {args}: no ready line ({line!r}): {self.err}")
        self.address = match.group(1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self, sig: int = signal.SIGKILL) -> int:
        """Sends ``sig`` (and SIGCONT, in case it was stopped); returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.send_signal(signal.SIGCONT)
        _, self.err = self.proc.communicate(timeout=30)
        return self.proc.returncode


@pytest.fixture
def learners() -> Iterator[Callable[..., LearnerProcess]]:
    """Starts casi-learner processes; every one still running is killed at the end."""
    started: list[LearnerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> LearnerProcess:
        started.append(LearnerProcess(*args, env=env))
        return started[-1]

    yield start
    for learner in started:
        learner.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def without_wall_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]


def children(pid: int) -> list[int]:
    """Child process ids of ``pid`` (Linux)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []
