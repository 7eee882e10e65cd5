"""``casi play``: a real tiny run, then its learners play the evaluation's episodes in words."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from casi_orchestrator import sampling
from casi_orchestrator.checkpoint import read_checkpoint, write_checkpoint
from casi_orchestrator.config import load_config
from casi_orchestrator.play import play_command
from casi_sim import BatchSim, narrate

from ..conftest import RUN_WAIT

ROOT = Path(__file__).resolve().parents[2]
CASI = [sys.executable, "-m", "casi_orchestrator"]

TINY = """\
seed = 4
agents = [{ name = "alice", kind = "learner" }, { name = "bob", kind = "honest" }]
max_steps = 6
attrs = { count = 4, direct = 2, goal = 1, values = 3 }
[algorithm]
batch = 16
iterations = 3
hidden_sizes = [16]
[eval]
every = 3
episodes = 12
[checkpoint]
every = 1
"""


def tiny_run(root: Path, text: str, trials: int = 1) -> Path:
    """runs/tiny after a real ``casi run`` of ``text`` (local learner subprocess)."""
    cfg = root / "tiny.toml"
    cfg.write_text(text)
    proc = subprocess.run(
        [*CASI, "run", str(cfg), "--out", str(root / "runs"), "--trials", str(trials)],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_WAIT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "runs" / "tiny"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A feed-forward learner beside an honest agent, after 3 iterations."""
    return tiny_run(tmp_path_factory.mktemp("play"), TINY)


def play(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    path, *rest = args
    episodes, seed, sample, learners, html = 1, None, False, [], None
    it = iter(rest)
    for flag in it:
        if flag == "--episodes":
            episodes = int(next(it))
        elif flag == "--seed":
            seed = int(next(it))
        elif flag == "--sample":
            sample = True
        elif flag == "--learner":
            learners.append(next(it))
        elif flag == "--html":
            html = Path(next(it))
    code = play_command(Path(path), episodes, seed, sample, learners, html, out, err)
    return code, out.getvalue(), err.getvalue()


def episodes_of(text: str) -> list[str]:
    """The printed episodes, one string each."""
    body = text.split("\n\nwho asks whom")[0]
    return re.split(r"\n\n(?=episode \d+\n)", body)[1:]


@pytest.mark.expensive
def test_play_replays_the_evaluation_in_words(run: Path) -> None:
    """The episodes are the evaluation's (same worlds), played as the evaluation played them:
    greedy play of all 12 wins and asks exactly as often as the last evaluation measured."""
    check_replay(run, "greedy actions")


@pytest.mark.expensive
def test_play_masks_and_resets_the_hidden_state_as_evaluation_does(tmp_path: Path) -> None:
    recurrent = TINY.replace("hidden_sizes = [16]", "hidden_sizes = [16]\nrecurrent = true\n"
                             "mask_pointless = true")  # fmt: skip
    check_replay(tiny_run(tmp_path, recurrent), "greedy actions among those not pointless")


def check_replay(run: Path, how: str) -> None:
    cfg = load_config(run / "trial-0" / "config.toml")
    _, meta = read_checkpoint(run / "trial-0" / "checkpoint")
    final = meta["final_eval"] or meta["last_eval"]
    code, out, err = play(str(run), "--episodes", "12")
    assert code == 0, err
    assert out.startswith("tiny trial 0, checkpoint of iteration 3 (")
    assert f"the first 12 of trial 0's evaluation episodes, {how}" in out.splitlines()[0]
    # the worlds: those of the evaluation's episodes
    game = cfg.game()
    sim = BatchSim(game, 12, seed=sampling.derive_seed(cfg.seed, 0, sampling.WORLD))
    sim.reset(sampling.derive_seed(cfg.seed, 0, sampling.EVAL_SIM))
    state = sim.state()
    printed = episodes_of(out)
    assert len(printed) == 12
    for b, text in enumerate(printed):
        world = narrate.world_lines(game, state, b, ["alice", "bob"])
        assert text.splitlines()[1:3] == world[:2], text
        # a win is a correct guess of alice's goal, at the step the ending names
        won = re.search(r"end: alice won at step (\d+)", text)
        if won:
            goal = int(np.flatnonzero(state["goal"][b, 0])[0])
            value = int(state["values"][b, goal])
            step = text.split(f"step {won.group(1)}\n")[1].split("\nstep ")[0]
            assert f"alice guesses attr {goal} = {value}: correct" in step
            assert "alice has solved all its goals and wins" in step
    wins = int(re.search(r"alice: won (\d+) of 12", out).group(1))
    assert wins == round(final["alice"]["win_rate"] * 12)
    mean_return = float(re.search(r"alice: won \d+ of 12, mean return ([-+.\d]+)", out).group(1))
    assert mean_return == pytest.approx(final["alice"]["return"], abs=0.06)
    table = out.split("who asks whom")[1].splitlines()
    asks = [int(x) for x in table[2].split()[1:]]  # alice's row
    assert table[2].startswith("alice") and sum(asks) == round(final["alice"]["questions"] * 12)


@pytest.mark.expensive
def test_play_a_checkpoint_folder_sampled_with_another_seed(run: Path) -> None:
    checkpoint = run / "trial-0" / "checkpoint"
    code, out, err = play(
        str(checkpoint), "--seed", "7", "--sample", "--learner", "alice=inprocess"
    )
    assert code == 0, err
    assert "1 episode(s) of seed 7, actions sampled" in out.splitlines()[0]
    assert len(episodes_of(out)) == 1
    again = play(str(checkpoint), "--seed", "7", "--sample", "--learner", "alice=inprocess")
    assert again[1] == out  # the same seed plays the same episode and draws the same actions


@pytest.mark.expensive
def test_play_writes_the_html_viewer(run: Path, tmp_path: Path) -> None:
    page = tmp_path / "view" / "tiny.html"
    code, out, err = play(str(run / "trial-0"), "--episodes", "3", "--html", str(page))
    assert code == 0, err
    assert out.rstrip().endswith(f"wrote {page}")
    html = page.read_text()
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html and "<link" not in html and " src=" not in html
    data = json.loads(html.split('id="casi-data">')[1].split("</script>")[0])
    assert data["names"] == ["alice", "bob"] and len(data["episodes"]) == 3
    first = episodes_of(out)[0].split("\nstep 2\n")[0].split("step 1\n")[1]
    assert data["episodes"][0]["steps"][0]["lines"] == [x.strip() for x in first.splitlines()]


@pytest.mark.expensive
def test_play_with_a_learner_given_by_address(run: Path, learners) -> None:
    """--learner NAME=HOST:PORT: a running learner is Init-ed and given the checkpoint."""
    learner = learners("--port", "0")
    local = play(str(run), "--episodes", "2", "--learner", "alice=inprocess")
    remote = play(str(run), "--episodes", "2", "--learner", f"alice={learner.address}")
    assert remote[0] == 0, remote[2]
    assert remote[1] == local[1]


@pytest.mark.expensive
def test_a_checkpoint_folder_alone_plays_from_the_config_it_keeps(
    run: Path, tmp_path: Path
) -> None:
    alone = tmp_path / "copied"
    shutil.copytree(run / "trial-0" / "checkpoint", alone)
    code, out, err = play(str(alone), "--learner", "alice=inprocess")
    assert code == 0, err
    beside = play(str(run / "trial-0"), "--learner", "alice=inprocess")[1]
    assert out.split("\n", 1)[1] == beside.split("\n", 1)[1]  # all but the path in the header
    arrays, meta = read_checkpoint(alone)
    del meta["config"]
    write_checkpoint(tmp_path / "older", arrays, meta)
    code, out, err = play(str(tmp_path / "older"))
    assert (code, out) == (2, "")
    assert err.startswith(f"casi: {tmp_path / 'older'}: no config.toml beside it in {tmp_path}")


def test_bad_paths_get_one_clear_message(tmp_path: Path) -> None:
    code, out, err = play(str(tmp_path / "nope"))
    assert (code, out) == (2, "")
    assert err == f"casi: {tmp_path / 'nope'}: no such run, trial or checkpoint folder\n"
    code, _, err = play(str(tmp_path))
    assert code == 2 and "not a run folder (no trial-*/config.toml)" in err
    assert len(err.splitlines()) == 1
    code, _, err = play(str(tmp_path), "--episodes", "0")
    assert code == 2 and err == "casi: --episodes must be >= 1, got 0\n"


def test_a_trial_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    trial = tmp_path / "runs" / "tiny" / "trial-0"
    trial.mkdir(parents=True)
    (trial / "config.toml").write_text(TINY)
    code, out, err = play(str(tmp_path / "runs" / "tiny"))
    assert (code, out) == (1, "")
    assert err == (
        f"casi: {trial}: no checkpoint yet ({trial / 'checkpoint'} is missing): the trial has "
        "not reached its first checkpoint.every iterations\n"
    )
    code, _, err = play(str(trial), "--learner", "carol=127.0.0.1:1")
    assert code == 2
    assert "--learner carol=127.0.0.1:1: no agent named 'carol' (agents: alice, bob)" in err
    other = tmp_path / "runs" / "other"
    for k in (10, 2):  # by number, not by name
        (other / f"trial-{k}").mkdir(parents=True)
        (other / f"trial-{k}" / "config.toml").write_text(TINY)
    _, _, err = play(str(other))
    assert err.splitlines()[0] == (
        f"{other} has 2 trials; playing trial-2 (name another trial folder to play it)"
    )


@pytest.mark.expensive
def test_play_a_later_trial_with_its_own_bonus(tmp_path: Path) -> None:
    # each trial's SimHash projection has its own seed: trial 1's checkpoint must be read
    # against trial 1's fresh state (it was refused as "saved by a different bonus")
    run = tiny_run(tmp_path, TINY, trials=2)
    code, out, err = play(str(run / "trial-1"))
    assert code == 0, err
    assert out.startswith("tiny trial 1, checkpoint of iteration 3 (")
    assert "the first 1 of trial 1's evaluation episodes" in out.splitlines()[0]


@pytest.mark.expensive
def test_a_damaged_checkpoint_is_refused(run: Path, tmp_path: Path) -> None:
    trial = tmp_path / "trial-0"
    shutil.copytree(run / "trial-0", trial)
    arrays = trial / "checkpoint" / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[:-10])
    code, out, err = play(str(trial))
    assert (code, out) == (1, "")
    assert err.startswith(f"casi: checkpoint file {arrays} is truncated")


def test_the_cli_has_the_play_subcommand() -> None:
    proc = subprocess.run([*CASI, "play", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0
    for flag in ("RUN_OR_CHECKPOINT", "--episodes", "--seed", "--sample", "--learner", "--html"):
        assert flag in proc.stdout
    missing = subprocess.run([*CASI, "play", "/nonexistent/run"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr == "casi: /nonexistent/run: no such run, trial or checkpoint folder\n"
