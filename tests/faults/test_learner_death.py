"""A learner process killed in the middle of a run: local ones are restarted, remote ones waited for.

Every random stream of a run is a function of (seed, trial, iteration) and a learner's update of
its parameters, optimizer state, batch, seed and step, so a run whose learner was lost and
restored must write exactly the rows of a run that lost nothing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from casi_orchestrator.checkpoint import read_checkpoint
from casi_orchestrator.config import RunConfig, load_config
from casi_orchestrator.learners import LearnerPool
from casi_orchestrator.outputs import TrialOutput
from casi_orchestrator.trainer import Trainer

from .conftest import (
    CASI,
    ROOT,
    RUN_WAIT,
    LearnerProcess,
    free_port,
    read_rows,
    wait_rows,
    without_wall_time,
)

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="signals and /proc"),
    pytest.mark.expensive,
]
SMOKE = ROOT / "experiments" / "smoke.toml"
KILL_AT = 3  # the iteration in which the learner is lost
KILL_CALL = 5  # the Predict call of that iteration's rollout (of 10) that finds it gone


def run_trial(
    cfg: RunConfig,
    folder: Path,
    address: str | None = None,
    prepare: Callable[[Trainer, LearnerPool], None] | None = None,
) -> list[dict[str, str]]:
    with LearnerPool(cfg.learners, folder) as pool:
        pool.open("a0", address)
        trainer = Trainer(cfg, 0, pool, TrialOutput(folder / "trial-0", ["a0"]))
        if prepare is not None:
            prepare(trainer, pool)
        try:
            trainer.run(False)
        finally:
            trainer.close()
    return read_rows(folder / "trial-0" / "iterations.csv")


def kill_inside(
    trainer: Trainer,
    net: Any,
    method: str,
    kill: Callable[[], None],
    call: int = KILL_CALL,
    at: int = KILL_AT,
) -> None:
    """Makes the ``call``-th ``method`` call of iteration ``at`` run ``kill`` first."""
    original = getattr(net, method)
    calls = []

    def wrapped(*args: Any) -> Any:
        if trainer.iteration == at:
            calls.append(1)
            if len(calls) == call:
                kill()
        return original(*args)

    setattr(net, method, wrapped)


def events(folder: Path) -> list[dict[str, Any]]:
    text = (folder / "trial-0" / "events.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    """The rows of the smoke run with nothing killed."""
    folder = tmp_path_factory.mktemp("plain")
    return without_wall_time(run_trial(load_config(SMOKE), folder))


@pytest.mark.parametrize(
    ("method", "sig", "call", "at"),
    [
        ("train", signal.SIGKILL, 1, KILL_AT),  # while Train is running (10 ms after it was sent)
        ("predict", signal.SIGTERM, KILL_CALL, KILL_AT),  # mid-rollout, a graceful stop: exit 0
        # after Train, before the GetParams that follows it: the restarted learner is given the
        # previous parameters and that Train again
        ("get_params", signal.SIGKILL, 1, KILL_AT),
        # the first Predict of an evaluation
        ("predict", signal.SIGKILL, 11, 4),
    ],
    ids=["sigkill-train", "sigterm-rollout", "sigkill-before-get-params", "sigkill-eval"],
)
def test_a_killed_local_learner_is_restarted_and_the_run_is_unchanged(
    tmp_path: Path, plain: list[dict[str, str]], method: str, sig: int, call: int, at: int
) -> None:
    first: dict[str, subprocess.Popen[bytes]] = {}

    def prepare(trainer: Trainer, pool: LearnerPool) -> None:
        learner = pool.learners["a0"]
        assert learner.process is not None
        first["process"] = proc = learner.process

        def kill() -> None:
            if method == "train":
                threading.Timer(0.01, proc.send_signal, (sig,)).start()
            else:
                proc.send_signal(sig)
                if sig == signal.SIGKILL:
                    proc.wait()  # gone before the call is sent

        kill_inside(trainer, learner.net, method, kill, call, at)

    rows = run_trial(load_config(SMOKE), tmp_path, prepare=prepare)
    assert without_wall_time(rows) == plain
    proc = first["process"]
    assert proc.returncode == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    restarts = [e for e in events(tmp_path) if e.get("event") == "learner_restarted"]
    assert [(e["iteration"], e["agent"]) for e in restarts] == [(at, "a0")]


@pytest.mark.parametrize("method", ["init", "set_params"])
def test_a_replacement_that_dies_while_it_is_given_back_its_state_is_replaced_again(
    tmp_path: Path, plain: list[dict[str, str]], method: str
) -> None:
    def prepare(trainer: Trainer, pool: LearnerPool) -> None:
        learner = pool.learners["a0"]
        assert learner.process is not None
        first = learner.process
        kill_inside(trainer, learner.net, "predict", lambda: (first.kill(), first.wait()))
        restart, replacements = pool.restart, []

        def restart_and_doom_the_first(name: str) -> Any:
            new = restart(name)
            replacements.append(new.process)
            if len(replacements) == 1:
                doomed = new.process
                original = getattr(new.net, method)

                def die_first(*args: Any) -> Any:
                    doomed.kill()
                    doomed.wait()
                    return original(*args)

                setattr(new.net, method, die_first)
            return new

        pool.restart = restart_and_doom_the_first  # type: ignore[method-assign]

    rows = run_trial(load_config(SMOKE), tmp_path, prepare=prepare)
    assert without_wall_time(rows) == plain
    restarts = [e for e in events(tmp_path) if e.get("event") == "learner_restarted"]
    assert [(e["iteration"], e["agent"]) for e in restarts] == [(KILL_AT, "a0")]


def test_a_remote_learner_that_comes_back_in_time_is_restored(
    tmp_path: Path, plain: list[dict[str, str]], learners: Callable[..., LearnerProcess]
) -> None:
    port = free_port()
    remote = learners("--port", str(port))
    back: list[float] = []

    def kill_and_restart_later() -> None:
        remote.kill()

        def restart() -> None:
            time.sleep(1.0)
            learners("--port", str(port))  # the same address, a fresh process without a model
            back.append(time.monotonic())

        threading.Thread(target=restart, daemon=True).start()

    def prepare(trainer: Trainer, pool: LearnerPool) -> None:
        kill_inside(trainer, pool.learners["a0"].net, "predict", kill_and_restart_later)

    cfg = load_config(SMOKE)
    assert cfg.learners.remote_wait == 30  # the default wait
    rows = run_trial(cfg, tmp_path, remote.address, prepare)
    assert back, "the learner was not restarted"
    assert without_wall_time(rows) == plain
    assert remote.proc.returncode == -signal.SIGKILL
    back_events = [e for e in events(tmp_path) if e.get("event") == "learner_reconnected"]
    assert [(e["iteration"], e["agent"], e["address"]) for e in back_events] == [
        (KILL_AT, "a0", remote.address)
    ]


LONG = """\
seed = 3
agents = ["learner", "random"]
max_steps = 10
attrs = { count = 4, direct = 2, goal = 1, values = 4 }
[algorithm]
batch = 32
iterations = 100000
hidden_sizes = [16]
[eval]
every = 2
episodes = 32
[checkpoint]
every = 1000
[learners]
remote_wait = 2
"""


def test_a_remote_learner_that_stays_away_stops_the_run_with_a_checkpoint(
    tmp_path: Path, learners: Callable[..., LearnerProcess]
) -> None:
    cfg = tmp_path / "long.toml"
    cfg.write_text(LONG)
    port = free_port()
    remote = learners("--port", str(port), "--policy", "honest")
    proc = subprocess.Popen(
        [*CASI, "run", str(cfg), "--learner", f"a0={remote.address}", "--out", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        csv_path = tmp_path / "long" / "trial-0" / "iterations.csv"
        wait_rows(csv_path, 3, proc)
        remote.kill()
        killed = time.monotonic()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    waited = time.monotonic() - killed
    assert proc.returncode == 1, err[-2000:]
    assert 2 <= waited < 15  # the retries (~1.4 s), remote_wait = 2, then the checkpoint
    assert "Traceback" not in err
    message = " ".join(err.split())
    assert f"agent a0 at {remote.address}" in message
    assert "waited 2 s (learners.remote_wait)" in message
    _, meta = read_checkpoint(tmp_path / "long" / "trial-0" / "checkpoint")
    rows = read_rows(csv_path)
    assert meta["iteration"] == len(rows) >= 3 and meta["finished"] is False
    assert f"iteration {meta['iteration']} is checkpointed" in message
    assert "--resume" in message
    # the learner is back at the same address: the run goes on from its checkpoint
    again = learners("--port", str(port), "--policy", "honest")
    assert again.address == remote.address
    resumed = subprocess.run(
        [*CASI, "run", str(cfg), "--learner", f"a0={again.address}", "--out", str(tmp_path),
         "--resume", "--iterations", str(meta["iteration"] + 2)],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_WAIT,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [r["iteration"] for r in read_rows(csv_path)] == [
        str(i) for i in range(1, meta["iteration"] + 3)
    ]
