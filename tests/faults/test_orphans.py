"""A learner never outlives the orchestrator that started it, however that one dies."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from ..conftest import READY, ROOT, START_WAIT, wait_until

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc and PR_SET_PDEATHSIG")
GONE_WAIT = 20.0  # s a learner may take to notice its parent is gone and exit
MARK = "CASI_ORPHAN_TEST_MARK"

# A stand-in for `casi run`: starts a learner through LearnerPool and keeps calling it.
ORCHESTRATOR = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from casi_orchestrator.config import LearnersCfg
    from casi_orchestrator.learners import LearnerPool
    from casi_proto.compliance import NetContract

    pool = LearnerPool(LearnersCfg(start_timeout=120.0), Path(sys.argv[1]))
    learner = pool.open("a0", None)
    print("started", learner.process.pid, flush=True)
    while True:
        learner.net.init(NetContract().make_cfg())
        learner.net.get_params()
    """
)


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def learners_marked(mark: str) -> list[int]:
    """Live casi-learner processes whose environment holds ``MARK=mark``."""
    found = []
    needle = f"{MARK}={mark}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        pid = int(entry.name)
        if needle in environ.split(b"\0") and state != "Z" and b"-m\0casi_learner" in cmdline(pid):
            found.append(pid)
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def marked_env(mark: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CASI_TOKEN"}
    return {**env, MARK: mark}


def test_learner_stops_when_the_parent_pid_dies_without_a_death_signal() -> None:
    # The learner's own parent is a shell that lives on: no PR_SET_PDEATHSIG fires, so only
    # the watchdog on --parent-pid can notice that the process it belongs to is gone.
    mark = uuid.uuid4().hex
    learner = f"{sys.executable} -m casi_learner --policy honest --parent-pid $OWNER; sleep 60"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, subprocess\n"
            "env = {**os.environ, 'OWNER': str(os.getpid())}\n"
            f"subprocess.Popen(['sh', '-c', {learner!r}], env=env).wait()",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=marked_env(mark),
    )
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        assert READY.match(line), f"no ready line: {line!r}"
        assert learners_marked(mark)
        owner.kill()
        owner.wait()
        gone = wait_until(lambda: not learners_marked(mark), GONE_WAIT)
        assert gone, f"the learner outlived the process {owner.pid} of its --parent-pid"
    finally:
        kill_all(learners_marked(mark))


def test_learner_refuses_to_start_for_a_parent_that_is_gone() -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **TEXT)
    dead = int(done.stdout)
    run = subprocess.run(
        [sys.executable, "-m", "casi_learner", "--policy", "honest", "--parent-pid", str(dead)],
        **TEXT,
        timeout=START_WAIT,
    )
    assert run.returncode == 1
    assert f"parent process {dead} is gone" in run.stderr
    assert run.stdout == ""


TEXT: dict = {"capture_output": True, "text": True, "cwd": ROOT}  # type: ignore[type-arg]


@pytest.mark.expensive
def test_repeated_kill_9_of_the_orchestrator_leaves_no_learner(tmp_path: Path) -> None:
    rng = random.Random(12)
    survivors = []
    for attempt in range(8):
        mark = uuid.uuid4().hex
        orchestrator = subprocess.Popen(
            [sys.executable, "-c", ORCHESTRATOR, str(tmp_path / f"logs-{attempt}")],
            stdout=subprocess.PIPE,
            stderr=open(tmp_path / f"orchestrator-{attempt}.err", "w"),  # noqa: SIM115
            text=True,
            cwd=ROOT,
            env=marked_env(mark),
        )
        try:
            if attempt % 2:  # after the learner is up, in the middle of the calls
                assert orchestrator.stdout is not None
                line = orchestrator.stdout.readline()
                err = (tmp_path / f"orchestrator-{attempt}.err").read_text()
                assert line.startswith("started"), f"{line!r}: {err}"
            time.sleep(rng.uniform(0.0, 3.0))  # even ones: while the learner starts
            orchestrator.kill()
            orchestrator.wait()
            if not wait_until(lambda: not learners_marked(mark), GONE_WAIT):  # noqa: B023
                survivors.append((attempt, learners_marked(mark)))
        finally:
            orchestrator.kill()
            orchestrator.wait()
            kill_all(learners_marked(mark))
    assert not survivors, f"learners outlived their orchestrator: {survivors}"
