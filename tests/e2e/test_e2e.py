"""Whole runs through real ``casi-learner`` subprocesses over gRPC (the CI smoke tests).

Bounds are for a busy machine with a cold numba cache; every wait ends as soon as it can.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from casi_orchestrator.checkpoint import read_checkpoint
from casi_orchestrator.outputs import csv_columns

from ..conftest import RUN_WAIT, LearnerProcess, wait_until

ROOT = Path(__file__).resolve().parents[2]
CASI = [sys.executable, "-m", "casi_orchestrator"]
pytestmark = pytest.mark.expensive  # whole runs


def casi(*args: str, timeout: float = RUN_WAIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CASI, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def without_wall_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]


def test_exp0_groundhog_learns_and_writes_every_output(tmp_path: Path) -> None:
    start = time.monotonic()
    proc = casi("run", "experiments/exp0_groundhog.toml", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.monotonic() - start < RUN_WAIT
    run = tmp_path / "exp0_groundhog"
    trial = run / "trial-0"
    rows = read_rows(trial / "iterations.csv")
    assert list(rows[0]) == csv_columns(["a0"])
    assert len(rows) == 60 and rows[-1]["iteration"] == "60"
    assert float(rows[-1]["a0.win_rate"]) >= 0.9
    for line in (trial / "events.jsonl").read_text().splitlines():
        assert isinstance(json.loads(line), dict)
    arrays, meta = read_checkpoint(trial / "checkpoint")
    assert meta["iteration"] == 60 and meta["finished"] is True
    assert meta["csv_lines"] == 61 and meta["agent_steps"] == int(rows[-1]["agent_steps"])
    assert any(k.startswith("net/a0/tensors/") for k in arrays)
    assert any(k.startswith("net/a0/optimizer/") for k in arrays)
    assert "bonus/a0/counts" in arrays
    assert (trial / "curves.png").stat().st_size > 1000
    assert (run / "curves.png").stat().st_size > 1000
    assert "tomli" not in (trial / "config.toml").read_text()  # it is TOML, resolved
    assert str(run) in proc.stderr.replace("\n", "")


RESUME_CFG = """\
seed = 5
agents = ["learner", "honest"]
max_steps = 10
attrs = { count = 4, direct = 2, goal = 1, values = 4 }
[algorithm]
batch = 32
iterations = 40
hidden_sizes = [32]
[eval]
every = 3
episodes = 32
[checkpoint]
every = 4
[backtracking]
enabled = true
unimproved_limit = 1
[log]
actions_rewards = true
"""


def wait_closed(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError:
            return True
        time.sleep(0.2)
    return False


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    cfg = tmp_path / "resume.toml"
    cfg.write_text(RESUME_CFG)
    full = casi("run", str(cfg), "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-3000:]
    out = tmp_path / "cut"
    proc = subprocess.Popen(
        [*CASI, "run", str(cfg), "--out", str(out)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    meta = out / "resume" / "trial-0" / "checkpoint" / "meta.json"
    wait_until(meta.exists, RUN_WAIT, proc)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    _, cut_meta = read_checkpoint(meta.parent)
    assert cut_meta["iteration"] < 40
    # the learner the killed run started does not outlive it
    first = (out / "resume" / "trial-0" / "events.jsonl").read_text().splitlines()[0]
    host, port = json.loads(first)["learners"]["a0"]["address"].rsplit(":", 1)
    assert wait_closed(host, int(port), 60)
    resumed = casi("run", str(cfg), "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = read_rows(tmp_path / "full" / "resume" / "trial-0" / "iterations.csv")
    b = read_rows(out / "resume" / "trial-0" / "iterations.csv")
    assert len(a) == 40
    assert without_wall_time(b) == without_wall_time(a)


@pytest.fixture
def honest_learner(learners: Callable[..., LearnerProcess]) -> Iterator[str]:
    learner = learners("--port", "0", "--policy", "honest")
    yield learner.address
    assert learner.kill(signal.SIGTERM) == 0


def test_a_foreign_learner_plugs_into_a_learner_slot(tmp_path: Path, honest_learner: str) -> None:
    proc = casi(
        "run", "experiments/smoke.toml", "--learner", f"a0={honest_learner}",
        "--iterations", "2", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    trial = tmp_path / "smoke" / "trial-0"
    start = json.loads((trial / "events.jsonl").read_text().splitlines()[0])
    assert start["learners"]["a0"]["address"] == honest_learner
    assert "scripted-honest" in start["learners"]["a0"]["implementation"]
    rows = read_rows(trial / "iterations.csv")
    # an honest policy replies to a random partner that mostly asked nothing: it pays for it
    assert float(rows[-1]["a0.return"]) < 0
    assert not (tmp_path / "smoke" / "learner-a0.log").exists()


def test_an_unreachable_learner_is_named_after_a_bounded_wait(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    text = (ROOT / "experiments" / "smoke.toml").read_text()
    cfg.write_text(text + "\n[learners]\nstart_timeout = 1.5\n")
    start = time.monotonic()
    proc = casi("run", str(cfg), "--learner", "a0=127.0.0.1:9", "--out", str(tmp_path))
    assert proc.returncode == 1
    assert time.monotonic() - start < 30
    assert "'a0'" in proc.stderr and "127.0.0.1:9" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="uses /proc")
def test_a_killed_local_learner_is_restarted_and_the_run_is_unchanged(tmp_path: Path) -> None:
    from casi_orchestrator.config import load_config
    from casi_orchestrator.learners import LearnerPool
    from casi_orchestrator.outputs import TrialOutput
    from casi_orchestrator.trainer import Trainer

    cfg = load_config(ROOT / "experiments" / "smoke.toml")
    results = {}
    for label, kill_at in (("plain", 0), ("killed", 2)):
        folder = tmp_path / label
        with LearnerPool(cfg.learners, folder) as pool:
            first = pool.open("a0", None)
            trainer = Trainer(cfg, 0, pool, TrialOutput(folder / "trial-0", ["a0"]))

            pid = first.process.pid if first.process else 0

            def kill(it: int, _: object, at: int = kill_at, pid: int = pid) -> None:
                if it == at:
                    os.kill(pid, signal.SIGKILL)

            try:
                trainer.run(False, kill)
            finally:
                trainer.close()
            if kill_at:
                assert pool.learners["a0"].process is not first.process
                assert first.process is not None and first.process.poll() is not None
        results[label] = read_rows(folder / "trial-0" / "iterations.csv")
    assert without_wall_time(results["killed"]) == without_wall_time(results["plain"])
    events = (tmp_path / "killed" / "trial-0" / "events.jsonl").read_text()
    assert '"event":"learner_restarted","agent":"a0"' in events
