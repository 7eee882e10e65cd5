"""For every test folder: real ``casi-learner`` processes that tests start, kill and restart.

Waits here assume a loaded machine (other jobs on every core, a cold numba cache): they end as
soon as what they wait for happens (a ready line, a file), and their bounds are generous.
Slow tests (whole runs, real processes, benchmarks) are marked ``expensive`` in their modules:
``make test-fast`` leaves them out, ``make test`` runs everything.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
READY = re.compile(r"casi-learner ready on (\S+) ")
START_WAIT = 120.0  # s for a learner's ready line: importing torch on a busy machine is slow
RUN_WAIT = 300.0  # s for a small ``casi run`` to get somewhere, a cold numba compile included


def wait_until(
    done: Callable[[], bool], timeout: float, proc: subprocess.Popen[Any] | None = None
) -> bool:
    """Polls ``done`` until it is true (True), or ``timeout`` s pass or ``proc`` ends (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        if done():
            return True
        time.sleep(0.05)
    return done()


def make_test_ca(out: Path) -> Path:
    """A test CA, server and client certificates in ``out`` (scripts/make-test-ca.sh)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed; scripts/make-test-ca.sh needs it")
    script = ROOT / "scripts" / "make-test-ca.sh"
    subprocess.run(["bash", str(script), str(out)], check=True, capture_output=True, timeout=60)
    return out


class ServerProcess:
    """A server subprocess that prints a ready line with its address (``ready``'s group 1)
    on stdout; ``address`` is that address. Its stderr goes to ``log`` if given (a process
    that serves many tests would otherwise block on a full pipe), else to a pipe; ``err``
    holds it once the process is killed."""

    def __init__(
        self, command: list[str], label: str, ready: re.Pattern[str], args: tuple[str, ...],
        env: dict[str, str] | None = None, log: Path | None = None,
    ) -> None:  # fmt: skip
        self.args = args
        self.err = ""
        self.log = log
        with nullcontext(subprocess.PIPE) if log is None else log.open("w") as stderr:
            self.proc = subprocess.Popen(
                [*command, *args],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                cwd=ROOT,
                env={**{k: v for k, v in os.environ.items() if k != "CASI_TOKEN"}, **(env or {})},
            )
        assert self.proc.stdout is not None
        ready_now, _, _ = select.select([self.proc.stdout], [], [], START_WAIT)
        self.line = line = self.proc.stdout.readline() if ready_now else ""
        match = ready.match(line)
        if match is None:
            self.kill()
            raise AssertionError(f"{label} {args}: no ready line ({line!r}): {self.err}")
        self.address = match.group(1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self, sig: int = signal.SIGKILL) -> int:
        """Sends ``sig`` (and SIGCONT, in case it was stopped); returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.send_signal(signal.SIGCONT)
        _, err = self.proc.communicate(timeout=30)
        self.err = err if self.log is None else self.log.read_text()
        return self.proc.returncode


class LearnerProcess(ServerProcess):
    """A ``casi-learner`` subprocess; ``address`` is what its ready line says."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        command = [sys.executable, "-m", "casi_learner", "--threads", "1"]
        super().__init__(command, "casi-learner", READY, args, env)


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


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray of 2 CPUs on loopback only, for one test module (skipped without Ray)."""
    ray = pytest.importorskip("ray")
    from casi_orchestrator import ray_learners

    before = os.environ.get(ray_learners.CLUSTERS_SWITCH)
    ray_learners.start_local(num_cpus=2)
    yield
    ray.shutdown()
    if before is None:
        os.environ.pop(ray_learners.CLUSTERS_SWITCH, None)
