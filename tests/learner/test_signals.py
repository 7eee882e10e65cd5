"""casi-learner under signal storms: however many SIGTERMs arrive, however fast, it exits 0."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest

from ..conftest import READY, ROOT, START_WAIT

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals")
EXIT_WAIT = 30.0  # s a learner may take to exit after the storm (a busy machine)
PROMPT = 3.0  # s: the orchestrator's DEATH_WAIT for a local learner that failed a call
proc_line: dict[int, str] = {}


def start_learner(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "casi_learner", "--policy", "honest", *args],  # last one counts
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "CASI_TOKEN"},
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], START_WAIT)
    line = proc.stdout.readline() if ready else ""
    if not READY.match(line):
        proc.kill()
        raise AssertionError(f"no ready line ({line!r}): {proc.communicate()[1]}")
    proc_line[proc.pid] = line
    return proc


def storm(proc: subprocess.Popen[str], seconds: float, sig: int = signal.SIGTERM) -> None:
    """Signals as fast as they can be sent, for ``seconds`` or until the process has exited."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            return


def exit_status(proc: subprocess.Popen[str]) -> tuple[int | None, str]:
    try:
        _, err = proc.communicate(timeout=EXIT_WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return None, err
    return proc.returncode, err


@pytest.mark.expensive
def test_sigterm_storms_always_end_in_exit_0() -> None:
    hung = []
    for attempt in range(12):
        proc = start_learner()
        time.sleep(0.05 * (attempt % 4))
        started = time.monotonic()
        storm(proc, 3.0, signal.SIGINT if attempt % 3 == 2 else signal.SIGTERM)
        code, err = exit_status(proc)
        if code != 0:
            hung.append((attempt, code, err[-500:]))
        assert time.monotonic() - started < EXIT_WAIT + 5
    assert not hung, f"{len(hung)} of 12 storms did not end in exit 0: {hung}"


def test_two_sigterms_in_quick_succession_exit_0() -> None:
    proc = start_learner()
    os.kill(proc.pid, signal.SIGTERM)
    os.kill(proc.pid, signal.SIGTERM)
    code, err = exit_status(proc)
    assert code == 0, err


@pytest.mark.expensive
def test_a_torch_learner_exits_promptly_after_sigterm() -> None:
    from casi_proto.client import NetClient
    from casi_proto.compliance import NetContract

    proc = start_learner("--policy", "torch", "--threads", "1")
    address = READY.match(proc_line[proc.pid]).group(1)  # type: ignore[union-attr]
    with NetClient(address) as client:
        client.wait_ready(60.0)
        client.init(NetContract().make_cfg())
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    code, err = exit_status(proc)
    took = time.monotonic() - started
    assert code == 0, err
    assert took < PROMPT, f"{took:.1f} s from SIGTERM to exit"
