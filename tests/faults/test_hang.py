"""A learner that hangs (SIGSTOP): the call fails at its deadline, naming agent and address.

The deadlines are a few seconds, so that a healthy learner on a busy machine never misses one,
and times are measured from the SIGSTOP: a cold numba compile before it does not count.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from casi_orchestrator.config import validate_config
from casi_orchestrator.learners import LearnerPool
from casi_orchestrator.outputs import TrialOutput
from casi_orchestrator.trainer import Trainer
from casi_proto.errors import NetError

from .conftest import CASI, ROOT, LearnerProcess, children, read_rows, wait_rows, wait_until

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="signals and /proc"),
    pytest.mark.expensive,
]

TWO_LEARNERS = {
    "seed": 4,
    "agents": [{"name": "alice", "kind": "learner"}, {"name": "bob", "kind": "learner"}],
    "max_steps": 6,
    "attrs": {"count": 4, "direct": 2, "goal": 1, "values": 4},
    "algorithm": {"batch": 16, "iterations": 50, "hidden_sizes": [8]},
    "eval": {"every": 2, "episodes": 16},
    "learners": {"rpc_timeout": 3.0, "remote_wait": 0.5},
}


def test_a_hung_remote_learner_fails_at_the_deadline_and_no_thread_leaks(
    tmp_path: Path, learners: Callable[..., LearnerProcess]
) -> None:
    alice = learners("--policy", "honest")
    bob = learners("--policy", "honest")
    cfg = validate_config(TWO_LEARNERS, "two.toml", {"alice": alice.address, "bob": bob.address})
    before = set(threading.enumerate())
    stopped: list[float] = []

    def stop_bob(it: int, _: object) -> None:
        if it == 2:
            bob.proc.send_signal(signal.SIGSTOP)
            stopped.append(time.monotonic())

    with LearnerPool(cfg.learners, tmp_path) as pool:
        for name, learner in (("alice", alice), ("bob", bob)):
            assert pool.open(name, learner.address).remote
        trainer = Trainer(cfg, 0, pool, TrialOutput(tmp_path / "trial-0", ["alice", "bob"]))
        try:
            with pytest.raises(NetError) as info:
                trainer.run(False, stop_bob)
        finally:
            trainer.close()
    message = info.value.message
    assert stopped, f"the run failed before bob was stopped: {message}"
    elapsed = time.monotonic() - stopped[0]
    assert info.value.code == "DEADLINE_EXCEEDED"
    assert message.startswith(f"agent bob at {bob.address}: ")  # InitHidden, the first call
    assert "no reply within the deadline of 3 s" in message
    assert "waited 0.5 s (learners.remote_wait)" in message
    assert "iteration 2 is checkpointed" in message
    assert elapsed < 20
    assert len(read_rows(tmp_path / "trial-0" / "iterations.csv")) == 2
    wait_until(lambda: not set(threading.enumerate()) - before, 30)
    assert not set(threading.enumerate()) - before, "threads left behind"
    assert alice.proc.poll() is None  # the healthy learner was not touched


SMALL = """\
seed = 6
agents = ["learner", "honest"]
max_steps = 10
attrs = { count = 4, direct = 2, goal = 1, values = 4 }
[algorithm]
batch = 16
iterations = 100000
hidden_sizes = [16]
[eval]
every = 5
episodes = 16
[checkpoint]
every = 1000
[learners]
rpc_timeout = 15  # a torch learner's first Init takes 5-8 s on a loaded 2-core machine
train_timeout = 15
"""


def test_a_hung_local_learner_ends_the_cli_run_at_the_deadline(tmp_path: Path) -> None:
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL)
    proc = subprocess.Popen(
        [*CASI, "run", str(cfg), "--out", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    learner_pid = 0
    try:
        wait_rows(tmp_path / "small" / "trial-0" / "iterations.csv", 2, proc)
        (learner_pid,) = children(proc.pid)
        stopped = time.monotonic()
        os.kill(learner_pid, signal.SIGSTOP)
        _, err = proc.communicate(timeout=60)
        survived = Path(f"/proc/{learner_pid}").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if learner_pid and Path(f"/proc/{learner_pid}").exists():
            os.kill(learner_pid, signal.SIGKILL)  # a stopped process ignores all but SIGKILL
    assert proc.returncode == 1, err[-2000:]
    assert time.monotonic() - stopped < 45
    assert "Traceback" not in err
    message = " ".join(err.split())
    assert "agent a0 at 127.0.0.1:" in message
    assert "no reply within the deadline of 15 s" in message
    assert "is checkpointed in" in message
    # the stopped learner was stopped for good (SIGTERM, then SIGCONT to act on it)
    assert not survived
