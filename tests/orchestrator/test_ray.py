"""Ray: learners placed by it (and brought back when it restarts them), parallel trials.

One local Ray for the module, on 127.0.0.1 with 2 CPUs, started as ``casi run --ray auto``
starts one. Every run here is compared with the same run on local learner subprocesses, one
trial after the other: apart from ``wall_time``, ``iterations.csv`` must be the same.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from casi_orchestrator.config import RunConfig, load_config
from casi_orchestrator.runner import run_experiment
from rich.console import Console

from ..conftest import RUN_WAIT, START_WAIT, wait_until

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.expensive

TINY = """\
name = "tiny"
seed = 3
agents = ["learner", "honest"]
max_steps = 10
attrs = { count = 4, direct = 2, goal = 1, values = 4 }
[algorithm]
batch = 8
iterations = 6
hidden_sizes = [16]
[eval]
every = 2
episodes = 8
[checkpoint]
every = 2
"""


def config(tmp: Path, learners: str = "") -> RunConfig:
    path = tmp / "tiny.toml"
    path.write_text(TINY + (f"[learners]\n{learners}\n" if learners else ""))
    return load_config(path)


def rows(root: Path, trial: int) -> list[dict[str, str]]:
    with open(root / "tiny" / f"trial-{trial}" / "iterations.csv") as f:
        return [{k: v for k, v in row.items() if k != "wall_time"} for row in csv.DictReader(f)]


def events(root: Path, trial: int) -> list[dict[str, object]]:
    path = root / "tiny" / f"trial-{trial}" / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two trials of TINY on local learner subprocesses, one after the other."""
    tmp = tmp_path_factory.mktemp("sequential")
    assert run_experiment(config(tmp), tmp / "runs", 2, False, console=quiet()) == 0
    return tmp / "runs"


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def test_the_local_ray_listens_on_loopback_only(local_ray: None) -> None:
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    ours = _descendants(os.getpid())
    listing = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    seen = []
    for line in listing.splitlines():
        pids = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if pids & ours:
            local = line.split()[3]
            seen.append(local)
            assert local.rsplit(":", 1)[0] in ("127.0.0.1", "[::ffff:127.0.0.1]"), line
    assert len(seen) >= 3, listing  # the GCS, the raylet, workers


def _learner_actor() -> object:
    from casi_orchestrator.ray_learners import ACTOR_PREFIX

    named = ray.util.list_named_actors(all_namespaces=True)
    mine = [a for a in named if a["name"].startswith(ACTOR_PREFIX)]
    assert len(mine) == 1, named
    return ray.get_actor(mine[0]["name"], namespace=mine[0]["namespace"])


def _anonymous_call(address: str) -> str:
    """The status code a GetParams without a token gets from the learner at ``address``."""
    from casi_proto.client import NetClient
    from casi_proto.errors import NetError

    with NetClient(address, name="anonymous", timeout=30) as client:
        try:
            client.get_params()
        except NetError as exc:
            return exc.code
    return "OK"


class KillOnce:
    """A should_stop that kills the learner actor once ``after`` rows are written, and waits
    until its learner is gone; never stops the run. Notes the actor's node before the kill
    and, an iteration later, after it."""

    def __init__(self, csv_path: Path, after: int) -> None:
        self.csv_path, self.after = csv_path, after
        self.killed_pid: int | None = None
        self.nodes: list[str] = []
        self.anonymous: str | None = None  # what a call without the token got, before the kill

    def __call__(self) -> bool:
        written = self.csv_path.exists() and len(self.csv_path.read_text().splitlines()) - 1
        if self.killed_pid is None and written and written >= self.after:
            actor = _learner_actor()
            self.nodes.append(ray.get(actor.node_id.remote(), timeout=60))
            self.anonymous = _anonymous_call(ray.get(actor.address.remote(), timeout=60))
            self.killed_pid = ray.get(actor.learner_pid.remote(), timeout=60)
            ray.kill(actor, no_restart=False)
            gone = wait_until(lambda: not Path(f"/proc/{self.killed_pid}").exists(), 60)
            assert gone, "the learner outlived its actor"
        elif len(self.nodes) == 1 and written and written > self.after:
            self.nodes.append(ray.get(_learner_actor().node_id.remote(), timeout=60))
        return False


def test_a_learner_placed_by_ray_killed_mid_run_changes_nothing(
    tmp_path: Path, local_ray: None, sequential: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASI_TOKEN", "placed-learners-need-it")  # not in the Ray's own env
    cfg = config(tmp_path, 'placement = "ray"\nnum_cpus = 1\nmax_restarts = 2')
    root = tmp_path / "runs"
    kill = KillOnce(root / "tiny" / "trial-0" / "iterations.csv", after=2)
    t0 = time.monotonic()
    assert run_experiment(cfg, root, 1, False, kill, console=quiet()) == 0
    assert kill.killed_pid is not None, "the run ended before the kill"
    assert kill.anonymous == "UNAUTHENTICATED"
    assert rows(root, 0) == rows(sequential, 0)
    back = [e for e in events(root, 0) if e.get("event") == "learner_restarted"]
    assert len(back) == 1 and back[0]["agent"] == "a0", back
    assert str(back[0]["address"]).startswith("127.0.0.1:")
    assert time.monotonic() - t0 < 2 * START_WAIT
    assert not ray.util.list_named_actors(all_namespaces=True), "the run left its actor behind"


def test_trials_on_ray_write_the_numbers_of_a_sequential_run(
    tmp_path: Path, local_ray: None, sequential: Path
) -> None:
    from casi_orchestrator.cli import main

    config(tmp_path)
    root = tmp_path / "runs"
    args = ["run", str(tmp_path / "tiny.toml"), "--trials", "2", "--out", str(root)]
    assert main([*args, "--ray", "auto"]) == 0
    for trial in (0, 1):
        assert rows(root, trial) == rows(sequential, trial)
        assert (root / "tiny" / "ray-logs" / f"trial-{trial}" / "learner-a0.log").is_file()
    started_1 = (root / "tiny" / "trial-1" / "config.toml").stat().st_mtime
    ended_0 = (root / "tiny" / "trial-0" / "iterations.csv").stat().st_mtime
    assert started_1 < ended_0, "the trials ran one after the other"
    assert (root / "tiny" / "curves.png").is_file()


# the second trial waited for ever for the first one's CPUs; the bound covers the module's
# fixtures too when this test runs alone (a local Ray, two sequential trials) on a busy machine
@pytest.mark.timeout(3 * RUN_WAIT)
def test_more_trials_than_the_ray_has_room_for_run_as_room_frees(
    tmp_path: Path, local_ray: None, sequential: Path
) -> None:
    from casi_orchestrator.ray_trials import run_trials

    # the local Ray has 2 CPUs: one trial at a time, each starting a learner (slow when busy)
    cfg = config(tmp_path, f"trial_cpus = 2\nstart_timeout = {START_WAIT}")
    root = tmp_path / "runs"
    results = run_trials(cfg, root / "tiny", 2, False, lambda: False, "auto", quiet())
    assert [r.iteration for r in results] == [6, 6]
    for trial in (0, 1):
        assert rows(root, trial) == rows(sequential, trial)


def test_a_learner_ray_may_not_restart_stops_the_run_with_a_checkpoint(
    tmp_path: Path, local_ray: None
) -> None:
    from casi_orchestrator.checkpoint import read_checkpoint

    cfg = config(tmp_path, 'placement = "ray"\nmax_restarts = 0')
    root = tmp_path / "runs"
    kill = KillOnce(root / "tiny" / "trial-0" / "iterations.csv", after=2)
    out = io.StringIO()
    code = run_experiment(cfg, root, 1, False, kill, console=Console(file=out, width=400))
    text = out.getvalue()
    assert code == 1, text
    assert "the learner of agent 'a0' (a Ray actor) is dead for good" in text
    assert "(learners.max_restarts = 0)" in text
    assert "--resume" in text
    _, meta = read_checkpoint(root / "tiny" / "trial-0" / "checkpoint")
    assert meta["iteration"] >= 2 and meta["finished"] is False
    assert not ray.util.list_named_actors(all_namespaces=True)


def test_trials_on_ray_with_learners_placed_by_ray_write_the_same_numbers(
    tmp_path: Path, local_ray: None, sequential: Path
) -> None:
    from casi_orchestrator.ray_trials import run_trials

    cfg = config(tmp_path, 'placement = "ray"\nnum_cpus = 0.5\ntrial_cpus = 0.5')
    root = tmp_path / "runs"
    results = run_trials(cfg, root / "tiny", 2, False, lambda: False, "auto", quiet())
    assert [r.iteration for r in results] == [6, 6]
    for trial in (0, 1):
        assert rows(root, trial) == rows(sequential, trial)
    assert not ray.util.list_named_actors(all_namespaces=True), "learner actors left behind"
