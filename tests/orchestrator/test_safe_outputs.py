"""``casi run`` never writes over a trial unless told (--resume or --force), says where a
resumed trial goes on from, prints the exact command to continue, and a refused resume names
the config keys that changed."""

from __future__ import annotations

import io
import json
import shlex
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from casi_learner.scripted import ScriptedNet
from casi_orchestrator.cli import _parser
from casi_orchestrator.config import RunConfig, load_config, parse_learner_flags
from casi_orchestrator.exits import EXIT_ERROR, EXIT_OK, EXIT_SIGNAL_BASE, EXIT_USAGE
from casi_orchestrator.outputs import trial_status
from casi_orchestrator.resume import changed_keys, fingerprinted, new_state, read_state
from casi_orchestrator.runner import command_words, run_experiment
from casi_orchestrator.trainer import ResumeError
from rich.console import Console

from ..conftest import LearnerProcess
from .test_checkpoint_lies import edit_meta
from .test_trainer import config, run_trial

ROOT = Path(__file__).resolve().parents[2]
TINY = """\
seed = 4
agents = ["learner", "honest"]
max_steps = 10
attrs = { count = 4, direct = 2, goal = 1, values = 4 }
[algorithm]
batch = 8
iterations = 2
hidden_sizes = [16]
[eval]
every = 2
episodes = 6
[checkpoint]
every = 1
"""


class Stop:
    """Stops a run once ``rows`` iterations are in trial ``trial``'s iterations.csv, as the
    first SIGINT does."""

    def __init__(self, csv_path: Path, rows: int) -> None:
        self.csv_path, self.rows = csv_path, rows
        self.signum: int | None = None

    def __call__(self) -> bool:
        if self.csv_path.exists() and len(self.csv_path.read_text().splitlines()) > self.rows:
            self.signum = 2
        return self.signum is not None


def run(tmp_path: Path, *options: str, stop: Any = None) -> tuple[int, str]:
    """``casi run tiny.toml --out tmp_path/runs --learner a0=inprocess OPTIONS`` in-process."""
    cfg_path = tmp_path / "tiny.toml"
    if not cfg_path.exists():
        cfg_path.write_text(TINY)
    argv = ["run", str(cfg_path), "--out", str(tmp_path / "runs"), "--learner", "a0=inprocess"]
    return run_argv([*argv, *options], stop)


def run_argv(argv: list[str], stop: Any = None) -> tuple[int, str]:
    """What ``casi ARGV`` does, in this process; its exit status and its words on stderr."""
    args = _parser().parse_args(argv)
    overrides, errors = parse_learner_flags(args.learner)
    assert not errors
    cfg = load_config(args.config, overrides=overrides, iterations=args.iterations, seed=args.seed)
    text = io.StringIO()
    console = Console(file=text, width=300)
    status = run_experiment(
        cfg, args.out, args.trials, args.resume, stop, console, args.force, command_words(args)
    )
    return status, " ".join(text.getvalue().split())


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-iteration trial under <tmp>/runs/tiny."""
    tmp = tmp_path_factory.mktemp("finished")
    status, text = run(tmp)
    assert status == EXIT_OK, text
    return tmp


def copy(source: Path, tmp_path: Path) -> Path:
    shutil.copytree(source / "runs", tmp_path / "runs")
    (tmp_path / "tiny.toml").write_text(TINY)
    return tmp_path / "runs" / "tiny"


def expected(tmp_path: Path, *more: str) -> str:
    words = ["casi", "run", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "runs")]
    return shlex.join([*words, "--trials", "1", "--learner", "a0=inprocess", *more])


@pytest.mark.expensive
def test_a_finished_trial_is_refused_with_both_ways_on(finished: Path, tmp_path: Path) -> None:
    folder = copy(finished, tmp_path)
    # the run's curves.png is the default figure of casi plot: four panels
    data = (folder / "curves.png").read_bytes()
    assert struct.unpack(">II", data[16:24]) == (1200, 800)
    before = files(folder)
    status, text = run(tmp_path, "--iterations", "5")
    assert status == EXIT_USAGE
    assert f"{folder / 'trial-0'}: finished, 2 iterations" in text
    assert expected(tmp_path, "--iterations", "5", "--resume") in text
    assert expected(tmp_path, "--iterations", "5", "--force") in text
    assert files(folder) == before


@pytest.mark.expensive
def test_force_deletes_the_old_trial_first(finished: Path, tmp_path: Path) -> None:
    folder = copy(finished, tmp_path)
    (folder / "trial-0" / "stale.txt").write_text("from an older version")
    status, text = run(tmp_path, "--force")
    assert status == EXIT_OK, text
    assert f"--force: deleted {folder / 'trial-0'} (finished, 2 iterations)" in text
    assert not (folder / "trial-0" / "stale.txt").exists()
    # the replacement is the same run again: the same rows, wall time aside
    old = (finished / "runs" / "tiny" / "trial-0" / "events.jsonl").read_text()
    assert len((folder / "trial-0" / "events.jsonl").read_text().splitlines()) == len(
        old.splitlines()
    )


@pytest.mark.expensive
def test_resume_says_where_each_trial_goes_on_and_starts_missing_ones(
    finished: Path, tmp_path: Path
) -> None:
    copy(finished, tmp_path)
    status, text = run(tmp_path, "--resume", "--trials", "2", "--iterations", "3")
    assert status == EXIT_OK, text
    assert "trial 0: finished at iteration 2: continuing it up to iteration 3" in text
    assert "trial 1: not run before: starting at iteration 0" in text
    rows = (tmp_path / "runs" / "tiny" / "trial-1" / "iterations.csv").read_text().splitlines()
    assert len(rows) == 4
    status, text = run(tmp_path, "--resume", "--trials", "2", "--iterations", "3")
    assert "trial 0: finished at iteration 3: nothing to do" in text


@pytest.mark.expensive
def test_an_interrupted_run_prints_the_command_that_continues_it(tmp_path: Path) -> None:
    csv_path = tmp_path / "runs" / "tiny" / "trial-0" / "iterations.csv"
    status, text = run(tmp_path, "--iterations", "6", stop=Stop(csv_path, 2))
    assert status == EXIT_SIGNAL_BASE + 2, text
    command = expected(tmp_path, "--iterations", "6", "--resume")
    assert f"interrupted (signal 2); continue with: {command}" in text
    status, text = run(tmp_path, "--iterations", "6")
    assert status == EXIT_USAGE
    assert f"{csv_path.parent}: partial, 2 iterations checkpointed" in text
    status, text = run_argv(shlex.split(command)[1:])
    assert status == EXIT_OK, text
    assert "trial 0: continuing from iteration 2 (of 6)" in text
    assert len(csv_path.read_text().splitlines()) == 7


def test_resume_without_any_checkpoint_is_refused(tmp_path: Path) -> None:
    status, text = run(tmp_path, "--resume")
    assert status == EXIT_USAGE
    assert "--resume: nothing to continue, no trial of this run has a checkpoint" in text
    assert f"{tmp_path / 'runs' / 'tiny'} holds no trial" in text
    assert f"start the run afresh with: {expected(tmp_path)}" in text
    assert not (tmp_path / "runs" / "tiny").exists()
    # killed before its first checkpoint: rows, no checkpoint
    trial = tmp_path / "runs" / "tiny" / "trial-0"
    trial.mkdir(parents=True)
    (trial / "iterations.csv").write_text("iteration,agent_steps\n1,80\n2,160\n")
    status, text = run(tmp_path, "--resume")
    assert status == EXIT_USAGE
    assert f"{trial}: partial, 2 rows in iterations.csv and no checkpoint" in text
    assert expected(tmp_path, "--force") in text
    status, text = run(tmp_path)
    assert status == EXIT_USAGE and "not writing over" in text
    assert (trial / "iterations.csv").read_text().count("\n") == 3


def test_an_empty_trial_folder_is_not_a_trial(tmp_path: Path) -> None:
    (tmp_path / "trial-0").mkdir()
    assert not trial_status(tmp_path / "trial-0").holds
    assert not trial_status(tmp_path / "trial-9").holds


def test_the_continue_command_keeps_every_option_that_decides_the_run() -> None:
    argv = [
        "run", "exp.toml", "--trials", "3", "--learner", "a0=127.0.0.1:5001",
        "--learner", "a1=inprocess", "--iterations", "7", "--resume", "--out", "my runs",
        "--seed", "11", "--target-win-rate", "0.9", "--tls-ca", "ca.pem",
        "--tls-cert", "c.pem", "--tls-key", "k.pem",
    ]  # fmt: skip
    args = _parser().parse_args(argv)
    words = command_words(args)
    assert words[:2] == ["casi", "run"] and "--resume" not in words
    again = _parser().parse_args([*words[1:], "--resume"])
    assert vars(again) == vars(args)
    assert "'my runs'" in shlex.join(words)


def resume_with(cfg: RunConfig, tmp_path: Path) -> str:
    state = new_state(cfg, 0)
    with pytest.raises(ResumeError) as caught:
        read_state(tmp_path / "trial-0" / "checkpoint", cfg, state, 0)
    return str(caught.value)


def test_a_changed_config_is_refused_naming_the_keys(tmp_path: Path) -> None:
    cfg = config(tmp_path, algorithm={"iterations": 2})
    run_trial(cfg, tmp_path, {"a0": ScriptedNet("silent")})
    other = config(tmp_path, seed=5, algorithm={"iterations": 9, "lr": 0.001, "gamma": 0.9})
    message = resume_with(other, tmp_path)
    assert "the keys that changed: algorithm.gamma: 0.99 -> 0.9; algorithm.lr: 0.0005" in message
    assert "-> 0.001; seed: 3 -> 5)" in message
    assert "iterations" not in message.split("(the keys")[1].split(")")[0]
    # a checkpoint from before meta.config: the trial's config.toml tells the keys
    edit_meta(tmp_path / "trial-0" / "checkpoint", lambda d: d["meta"].pop("config"))
    assert "seed: 3 -> 5" in resume_with(other, tmp_path)
    (tmp_path / "trial-0" / "config.toml").unlink()
    message = resume_with(other, tmp_path)
    assert f"fingerprint {cfg.fingerprint()}, this config {other.fingerprint()}" in message
    assert "the keys that changed are unknown" in message


def test_the_kept_config_is_what_the_fingerprint_hashes(tmp_path: Path) -> None:
    import hashlib

    for cfg in (
        config(tmp_path),
        config(tmp_path, agents=["learner", "random", "learner"], log={"learning": True}),
        load_config(ROOT / "experiments" / "exp2_honest.toml", overrides={"a0": "127.0.0.1:1"}),
    ):
        text = json.dumps(fingerprinted(cfg.resolved()), sort_keys=True)
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == cfg.fingerprint()


def test_changed_keys_by_hand() -> None:
    old = {"a": {"b": 1, "c": [1, 2]}, "d": "x", "gone": True}
    new = {"a": {"b": 1.0, "c": [1, 3]}, "d": "x", "new": [1]}
    assert changed_keys(old, new) == [
        "a.b: 1 -> 1.0",
        "a.c[1]: 2 -> 3",
        "gone: true -> (not set)",
        "new: (not set) -> [1]",
    ]


@pytest.mark.expensive
def test_a_lost_learner_prints_the_command_that_continues_the_run(
    tmp_path: Path, learners: Callable[..., LearnerProcess]
) -> None:
    (tmp_path / "tiny.toml").write_text(TINY + "[learners]\nremote_wait = 1\n")
    remote = learners("--policy", "honest")
    csv_path = tmp_path / "runs" / "tiny" / "trial-0" / "iterations.csv"

    def kill_after_two_rows() -> bool:
        if csv_path.exists() and len(csv_path.read_text().splitlines()) > 2:
            remote.kill()
        return False

    argv = ["run", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "runs")]
    argv += ["--learner", f"a0={remote.address}", "--iterations", "9"]
    status, text = run_argv(argv, kill_after_two_rows)
    assert status == EXIT_ERROR, text
    assert "iteration 2 is checkpointed" in text
    command = shlex.join(["casi", *argv[:4], "--trials", "1", *argv[4:], "--resume"])
    assert f"continue with: {command}" in text
