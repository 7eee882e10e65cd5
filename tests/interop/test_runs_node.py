"""Whole runs through the Node/TypeScript learner: ``casi run ... --learner a0=HOST:PORT``.

exp0 (one fixed world) is learnt to 0.9 greedy win rate, with PPO (the config's loss) and with
A2C; a Node learner killed in the middle of
a run is waited for like any remote learner: one back in time is re-initialised and given its
state, and the run ends normally; one that stays away stops the run with a checkpoint.
"""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..conftest import ROOT, RUN_WAIT, wait_until
from .conftest import NodeNet

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="signals"),
    pytest.mark.expensive,
]
CASI = [sys.executable, "-m", "casi_orchestrator"]
EXP0 = ROOT / "experiments" / "exp0_groundhog.toml"
SMALL = """\
seed = 5
agents = ["learner", "random"]
max_steps = 10
attrs = {{ count = 4, direct = 2, goal = 1, values = 4 }}
[algorithm]
batch = 32
iterations = {iterations}
[eval]
every = 2
episodes = 32
[checkpoint]
every = 1000
[learners]
remote_wait = {remote_wait}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def events(trial: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (trial / "events.jsonl").read_text().splitlines()]


def casi_run(config: Path, address: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [*CASI, "run", str(config), "--learner", f"a0={address}", "--out", str(out), *extra]
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str], timeout: float = RUN_WAIT) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_rows(path: Path, n: int, proc: subprocess.Popen[str]) -> None:
    def written() -> bool:
        return path.exists() and len(path.read_text().splitlines()) > n

    if not wait_until(written, RUN_WAIT, proc):
        raise AssertionError(f"{path}: fewer than {n} rows (exit status {proc.poll()})")


@pytest.mark.parametrize("loss", ["ppo", "a2c"])
def test_exp0_reaches_0_9_greedy_win_rate_through_the_node_learner(
    tmp_path: Path, node_nets: Callable[..., NodeNet], loss: str
) -> None:
    config = EXP0
    if loss != "ppo":  # exp0 as it is, but for [algorithm] loss
        config = tmp_path / "exp0_groundhog.toml"
        text = EXP0.read_text().replace("[algorithm]\n", f'[algorithm]\nloss = "{loss}"\n')
        config.write_text(text)
    net = node_nets("--policy", "linear")
    proc = casi_run(config, net.address, tmp_path, "--target-win-rate", "0.9")
    _, err = finish(proc)
    assert proc.returncode == 0, err[-3000:]
    trial = tmp_path / "exp0_groundhog" / "trial-0"
    assert f'loss = "{loss}"' in (trial / "config.toml").read_text()
    wins = [float(r["a0.win_rate"]) for r in rows(trial / "iterations.csv") if r["a0.win_rate"]]
    assert wins and max(wins) >= 0.9, wins
    assert net.proc.poll() is None, "the Node learner died during the run"


def test_a_killed_node_learner_back_in_time_is_reinitialised_and_the_run_ends(
    tmp_path: Path, node_nets: Callable[..., NodeNet]
) -> None:
    config = tmp_path / "small.toml"
    config.write_text(SMALL.format(iterations=12, remote_wait=60))
    port = free_port()
    first = node_nets("--port", str(port))
    proc = casi_run(config, first.address, tmp_path)
    trial = tmp_path / "small" / "trial-0"
    wait_rows(trial / "iterations.csv", 3, proc)
    assert first.kill() == -9
    back: list[NodeNet] = []

    def restart() -> None:
        time.sleep(1.0)
        back.append(node_nets("--port", str(port)))  # a fresh process: no model, no state

    threading.Thread(target=restart, daemon=True).start()
    _, err = finish(proc)
    assert proc.returncode == 0, err[-3000:]
    assert back and back[0].proc.poll() is None
    assert [int(r["iteration"]) for r in rows(trial / "iterations.csv")] == list(range(1, 13))
    again = [e for e in events(trial) if e.get("event") == "learner_reconnected"]
    assert [(e["agent"], e["address"]) for e in again] == [("a0", first.address)]
    assert "Traceback" not in err


def test_a_node_learner_that_stays_away_stops_the_run_with_a_checkpoint(
    tmp_path: Path, node_nets: Callable[..., NodeNet]
) -> None:
    config = tmp_path / "small.toml"
    config.write_text(SMALL.format(iterations=100000, remote_wait=2))
    net = node_nets()
    proc = casi_run(config, net.address, tmp_path)
    trial = tmp_path / "small" / "trial-0"
    wait_rows(trial / "iterations.csv", 3, proc)
    net.kill()
    killed = time.monotonic()
    _, err = finish(proc, 60)
    assert proc.returncode == 1, err[-3000:]
    assert 2 <= time.monotonic() - killed < 15
    message = " ".join(err.split())
    assert f"agent a0 at {net.address}" in message
    assert "waited 2 s (learners.remote_wait)" in message
    assert (trial / "checkpoint").is_dir()
    assert "--resume" in message
