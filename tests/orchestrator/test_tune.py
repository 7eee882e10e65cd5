"""casi tune: mutations, selection, copying a member's checkpoint (bit for bit, only the
mutated keys changed), and populations on a local Ray (PBT by Ray Tune, tournaments).

The populations train exp2's game (experiments/exp2_honest.toml) with a small network and
batch, so that four members over four intervals stay within a few minutes on 2 cores.
"""

from __future__ import annotations

import csv
import io
import math
import random
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w
from casi_orchestrator import tune
from casi_orchestrator.checkpoint import read_checkpoint
from casi_orchestrator.config import ConfigError, RunConfig, TuneCfg, load_config
from casi_orchestrator.resume import ResumeError
from casi_orchestrator.runner import run_experiment
from rich.console import Console

ROOT = Path(__file__).resolve().parents[2]
SLOW = 1800  # s: a population of four on two busy cores (its fixture included)
RESUME_WAIT = 900  # s: a population of two, 10 iterations, then 20 more after the resume
MUTATIONS = {
    "algorithm.lr": {"factors": [0.8, 1.25], "range": [1e-5, 1e-2]},
    "algorithm.entropy_coef": {"choices": [0.01, 0.02, 0.05, 0.1]},
    "bonus.beta": {"range": [0.01, 0.3], "log": True, "factors": [0.8, 1.25]},
}


def exp2(tmp: Path, iterations: int = 40, **tune_keys: Any) -> Path:
    """exp2_honest with a small budget and a [tune] section, written to ``tmp``."""
    data = tomllib.loads((ROOT / "experiments" / "exp2_honest.toml").read_text())
    data["name"] = "pop"
    data["algorithm"].update(iterations=iterations, batch=32, hidden_sizes=[32])
    data["eval"] = {"every": 10, "episodes": 32}
    data["log"] = {"tensorboard": False}
    data["learners"] = {"trial_cpus": 0.5}
    data["tune"] = {"population": 4, "interval": 10, "metric": "return", **tune_keys}
    data["tune"]["mutations"] = MUTATIONS
    path = tmp / "pop.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def lineage_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "lineage.csv", newline="") as f:
        return list(csv.DictReader(f))


def learner_arrays(path: Path) -> dict[str, np.ndarray]:
    arrays, _ = read_checkpoint(path)
    return {k: v for k, v in arrays.items() if k.split("/")[0] in ("net", "bonus", "bt")}


def assert_bitwise_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert a[key].tobytes() == b[key].tobytes(), key


# ---------------------------------------------------------------- without Ray


def test_perturb_keeps_choices_ranges_and_integers() -> None:
    rng = random.Random(0)
    cfg = TuneCfg.model_validate({"mutations": MUTATIONS | {"algorithm.epochs": {"factors": [2]}}})
    for _ in range(200):
        new = tune.mutate(
            {"algorithm.lr": 5e-4, "algorithm.entropy_coef": 0.05, "bonus.beta": 0.05,
             "algorithm.epochs": 4}, cfg, rng,
        )  # fmt: skip
        assert 1e-5 <= new["algorithm.lr"] <= 1e-2
        assert new["algorithm.entropy_coef"] in (0.01, 0.02, 0.05, 0.1)
        assert 0.01 <= new["bonus.beta"] <= 0.3
        assert new["algorithm.epochs"] == 8 and isinstance(new["algorithm.epochs"], int)


def test_a_choice_moves_to_a_neighbour_unless_resampled() -> None:
    cfg = TuneCfg.model_validate(
        {"resample_probability": 0.0, "mutations": {"algorithm.entropy_coef": MUTATIONS[
            "algorithm.entropy_coef"]}}
    )  # fmt: skip
    seen = {tune.mutate({"algorithm.entropy_coef": 0.02}, cfg, random.Random(s))[
        "algorithm.entropy_coef"] for s in range(50)}  # fmt: skip
    assert seen == {0.01, 0.05}


def test_selection_keeps_the_elite_and_tournaments_pick_the_best_drawn() -> None:
    cfg = TuneCfg.model_validate({"tournament_size": 4, "mutations": MUTATIONS})
    sources, elite = tune.select([0.1, 0.7, math.nan, 0.3], cfg, random.Random(1))
    assert elite == 1 and sources == [1, 1, 1, 1]  # everyone draws everyone: the best wins
    cfg = TuneCfg.model_validate({"tournament_size": 1, "elitism": False, "mutations": MUTATIONS})
    counts = [0, 0, 0, 0]
    for s in range(100):
        sources, elite = tune.select([0.1, 0.7, 0.2, 0.3], cfg, random.Random(s))
        assert elite is None
        for j in sources:
            counts[j] += 1
    assert min(counts) > 50  # size 1: a random member, no pressure


def test_a_member_given_anothers_checkpoint_copies_it_once(tmp_path: Path) -> None:
    from casi_orchestrator import lineage

    assert not tune._to_copy(tmp_path, 2, source=2, it=20)  # its own: a pause
    assert tune._to_copy(tmp_path, 2, source=0, it=20)
    lineage.append(tmp_path, 2, {"iteration": 20, "event": "copy", "source": 0}, {})
    assert not tune._to_copy(tmp_path, 2, source=0, it=20)  # taken before an interruption
    assert tune._to_copy(tmp_path, 2, source=0, it=40)  # the next exploit


def test_tune_keys_are_checked_when_the_config_is_loaded(tmp_path: Path) -> None:
    path = exp2(tmp_path, interval=15)
    with pytest.raises(ConfigError, match=r"tune\.interval \(15\) must be a multiple of eval"):
        load_config(path)
    data = tomllib.loads(exp2(tmp_path).read_text())
    data["tune"]["mutations"]["algorithm.hidden_sizes"] = {"choices": [1]}
    path.write_text(tomli_w.dumps(data))
    with pytest.raises(ConfigError, match=r"tune\.mutations: cannot mutate algorithm\.hidden_s"):
        load_config(path)
    del data["tune"]["mutations"]["algorithm.hidden_sizes"]
    data["tune"]["mutations"]["bonus.beta"] = {"choices": [0.1], "factors": [2]}
    path.write_text(tomli_w.dumps(data))
    with pytest.raises(ConfigError, match=r"tune\.mutations\.bonus\.beta: choices go alone"):
        load_config(path)


def test_a_tune_section_leaves_the_fingerprint_alone(tmp_path: Path) -> None:
    with_tune = load_config(exp2(tmp_path))
    data = tomllib.loads(exp2(tmp_path).read_text())
    del data["tune"]
    (tmp_path / "plain.toml").write_text(tomli_w.dumps({**data, "name": "pop"}))
    assert load_config(tmp_path / "plain.toml").fingerprint() == with_tune.fingerprint()


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunConfig, Path]:
    """Four members run 10 iterations each, as casi run's trials (local learners)."""
    tmp = tmp_path_factory.mktemp("members")
    cfg = load_config(exp2(tmp, iterations=10))
    assert run_experiment(cfg, tmp / "runs", 4, False, console=quiet()) == 0
    return cfg, tmp / "runs" / "pop"


def copy_of(folder: Path, tmp: Path) -> Path:
    import shutil

    target = tmp / "copy"
    shutil.copytree(folder, target)
    return target


@pytest.mark.expensive
def test_a_generation_copies_every_source_bit_for_bit_and_mutates_only_tuned_keys(
    members: tuple[RunConfig, Path], tmp_path: Path
) -> None:
    cfg, original = members
    folder = copy_of(original, tmp_path)
    before = {k: learner_arrays(tune.member_dir(folder, k) / "checkpoint") for k in range(4)}
    values = [tune.initial_values(cfg)] * 4
    state = {"generation": 0, "values": values}
    scores = [0.1, 0.9, 0.2, 0.3]
    tune._evolve(cfg, folder, state, scores, 10, random.Random(3))
    rows = tune.lineage.merge(folder, list(MUTATIONS))
    assert [r["event"] for r in rows if r["member"] == "1"] == ["elite"]
    for r in rows:
        k, j = int(r["member"]), int(r["source"])
        after = tune.member_dir(folder, k) / "checkpoint"
        assert_bitwise_equal(learner_arrays(after), before[j])
        _, meta = read_checkpoint(after)
        assert meta["trial"] == k and meta["iteration"] == 10 and not meta["finished"]
        mutated = load_config(tune.member_dir(folder, k) / "config.toml")
        for key, value in state["values"][k].items():
            section, name = key.split(".")
            assert getattr(getattr(mutated, section), name) == value == float(r[key])
        for change in filter(None, r["mutations"].split("; ")):
            assert change.split(":")[0] in MUTATIONS
    # and the members go on from there, as a resumed run does
    more = [tune.member_config(cfg, v, 20) for v in state["values"]]
    for k, c in enumerate(more):
        result = tune.run_member(c, k, folder, True, lambda: False, quiet())
        assert result.iteration == 20


@pytest.mark.expensive  # its fixture runs a population of 4 (~50 s)
def test_copying_refuses_a_change_beyond_the_tuned_keys(
    members: tuple[RunConfig, Path], tmp_path: Path
) -> None:
    cfg, original = members
    folder = copy_of(original, tmp_path)
    data = cfg.resolved()
    data["algorithm"]["gamma"] = 0.9
    from casi_orchestrator.config import validate_config

    other = validate_config(data, "pop")
    with pytest.raises(ResumeError, match=r"algorithm\.gamma: 0\.99 -> 0\.9 \(only the \[tune\]"):
        tune._copy(tune.member_dir(folder, 1) / "checkpoint", other, 0, folder, {})


# ---------------------------------------------------------------- on a local Ray


def values_of(meta: dict[str, Any]) -> dict[str, float]:
    """The mutated keys' values in a checkpoint's config."""
    return {key: meta["config"][key.split(".")[0]][key.split(".")[1]] for key in MUTATIONS}


def tune_checkpoints(folder: Path) -> list[tuple[int, dict[str, Any], Path]]:
    """(member, meta, path) of every checkpoint Ray Tune kept, in the order written."""
    found = []
    for path in sorted((folder / "tune").glob("pbt_member_*/checkpoint_*")):
        member = int(path.parent.name.split("_")[3])
        _, meta = read_checkpoint(path)
        found.append((member, meta, path))
    return found


@pytest.mark.expensive
@pytest.mark.timeout(SLOW)
def test_pbt_of_four_copies_checkpoints_bit_for_bit(local_ray: None, tmp_path: Path) -> None:
    cfg = load_config(exp2(tmp_path, iterations=40))
    folder = tune.run_tune(cfg, tmp_path / "runs", False, False, lambda: False, "auto", quiet())
    rows = lineage_rows(folder)
    assert sorted(int(r["member"]) for r in rows if r["event"] == "start") == [0, 1, 2, 3]
    copies = [r for r in rows if r["event"] == "copy"]
    assert len({int(r["iteration"]) for r in copies}) >= 3, copies
    kept = tune_checkpoints(folder)
    for r in copies:
        it, k, j = int(r["iteration"]), int(r["member"]), int(r["source"])
        assert j != k and r["mutations"]
        source = [p for m, meta, p in kept if m == j and meta["iteration"] == it]
        mutated = {key: float(r[key]) for key in MUTATIONS}
        taken = [
            p for m, meta, p in kept
            if m == k and meta["iteration"] == it and values_of(meta) == mutated
        ]  # fmt: skip
        assert source and taken  # what it continued from, as Tune kept it
        assert_bitwise_equal(learner_arrays(taken[0]), learner_arrays(source[-1]))
    for k in range(4):
        csv_rows = (tune.member_dir(folder, k) / "iterations.csv").read_text().splitlines()
        assert len(csv_rows) == 41  # one row per iteration, copies or not
    best = load_config(folder / "best_config.toml")
    assert best.tune is None and (folder / "lineage.png").stat().st_size > 0


def csv_without_wall_time(folder: Path, k: int) -> list[dict[str, str]]:
    with open(tune.member_dir(folder, k) / "iterations.csv", newline="") as f:
        return [{c: v for c, v in r.items() if c != "wall_time"} for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def tournament(local_ray: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tournament of four over 30 iterations (two selections), uninterrupted."""
    tmp = tmp_path_factory.mktemp("tournament")
    path = exp2(tmp, iterations=30, scheduler="tournament", mutation_probability=1.0)
    cfg = load_config(path)
    return path, tune.run_tune(cfg, tmp / "runs", False, False, lambda: False, "auto", quiet())


@pytest.mark.expensive
@pytest.mark.timeout(SLOW)
def test_a_tournament_keeps_its_elite_and_copies_winners(tournament: tuple[Path, Path]) -> None:
    _, folder = tournament
    rows = lineage_rows(folder)
    for it in (10, 20):
        generation = [r for r in rows if int(r["iteration"]) == it]
        assert sorted(int(r["member"]) for r in generation) == [0, 1, 2, 3]
        elite = [r for r in generation if r["event"] == "elite"]
        assert len(elite) == 1 and not elite[0]["mutations"]
        best = max(float(r["score"]) for r in generation)
        assert float(elite[0]["score"]) == best
        score = {int(r["member"]): float(r["score"]) for r in generation}
        for r in generation:
            assert float(r["source_score"]) == score[int(r["source"])]
            assert (r["event"] == "copy") == (r["source"] != r["member"])
            if r["event"] != "elite":
                assert len(r["mutations"].split("; ")) == 1  # probability 1, one key
    for k in range(4):
        assert len(csv_without_wall_time(folder, k)) == 30
        cfg = load_config(tune.member_dir(folder, k) / "config.toml")
        last = [r for r in rows if int(r["member"]) == k][-1]
        assert cfg.algorithm.lr == float(last["algorithm.lr"])
    assert (folder / "best_config.toml").exists() and (folder / "lineage.png").exists()


class StopInSecondGeneration:
    """True once the tournament is in its second generation and member 0 is 2 iterations in."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self) -> bool:
        state = self.folder / tune.STATE
        if not state.exists() or '"generation": 1' not in state.read_text():
            return False
        lines = (tune.member_dir(self.folder, 0) / "iterations.csv").read_text().splitlines()
        return len(lines) > 12


@pytest.mark.expensive
@pytest.mark.timeout(SLOW)
def test_a_tournament_stopped_and_resumed_writes_what_an_uninterrupted_one_does(
    tournament: tuple[Path, Path], tmp_path: Path
) -> None:
    path, whole = tournament
    cfg = load_config(path)
    root = tmp_path / "runs"
    stop = StopInSecondGeneration(root / "pop")
    tune.run_tune(cfg, root, False, False, stop, "auto", quiet())
    stopped = [len(csv_without_wall_time(root / "pop", k)) for k in range(4)]
    assert all(10 <= n < 30 for n in stopped), stopped  # stopped in the second generation
    with pytest.raises(FileExistsError, match="--resume"):
        tune.run_tune(cfg, root, False, False, lambda: False, "auto", quiet())
    folder = tune.run_tune(cfg, root, True, False, lambda: False, "auto", quiet())
    for k in range(4):
        assert csv_without_wall_time(folder, k) == csv_without_wall_time(whole, k)
    assert lineage_rows(folder) == lineage_rows(whole)


@pytest.mark.expensive
@pytest.mark.timeout(SLOW)
def test_casi_tune_stopped_by_sigint_and_resumed_ends_with_every_member_through(
    tmp_path: Path,
) -> None:
    """PBT as the command runs it: SIGINT ends it at the members' last checkpoints (exit 130);
    ``--resume`` takes every member to the end (exit 0) and the lineage goes on."""
    import signal
    import subprocess
    import sys

    from ..conftest import RUN_WAIT, wait_until

    path = exp2(tmp_path, iterations=30, population=2)  # the PBT of four is tested above
    casi = [sys.executable, "-m", "casi_orchestrator", "tune", str(path), "--out", "runs"]
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(casi, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    folder = tmp_path / "runs" / "pop"
    try:
        copied = lambda: any(  # noqa: E731
            "copy" in p.read_text() for p in folder.glob("trial-*/lineage.csv")
        )
        assert wait_until(copied, 3 * RUN_WAIT, proc), (tmp_path / "first.log").read_text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(RUN_WAIT) == 130, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "continue with: casi tune" in (tmp_path / "first.log").read_text()
    stopped = []
    for k in range(2):
        _, meta = read_checkpoint(tune.member_dir(folder, k) / "checkpoint")
        assert meta["iteration"] >= 10 and meta["iteration"] % 10 == 0
        stopped.append(meta["iteration"])
    before = lineage_rows(folder)
    with open(tmp_path / "resumed.log", "w") as log:
        done = subprocess.run([*casi, "--resume"], cwd=tmp_path, stdout=log,
                              stderr=subprocess.STDOUT, timeout=3 * RUN_WAIT)  # fmt: skip
    assert done.returncode == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    for k in range(2):
        _, meta = read_checkpoint(tune.member_dir(folder, k) / "checkpoint")
        assert meta["iteration"] == 30 and meta["finished"], (stopped, k)
        assert len(csv_without_wall_time(folder, k)) == 30
    rows = lineage_rows(folder)
    assert rows[: len(before)] == before
    assert {int(r["iteration"]) for r in rows[len(before) :]} >= {30}, (stopped, rows)
    assert (folder / "best_config.toml").exists()


@pytest.mark.expensive
@pytest.mark.timeout(RESUME_WAIT)  # it used to wait for ever with both members paused
def test_a_pbt_stopped_between_two_syncs_resumes_ends_and_goes_on_perturbing(
    local_ray: None, tmp_path: Path
) -> None:
    """What a Ctrl-C between two syncs leaves: member 0 at the sync at 20 (waiting), member 1
    still at 10. ``casi tune --resume --iterations 30`` ends with exit 0, perturbs at 20 and
    30 as an uninterrupted run would, and writes the lineage and best config."""
    from casi_orchestrator.cli import main

    path = exp2(tmp_path, iterations=10, population=2)
    cfg = load_config(path)
    folder = tune.run_tune(cfg, tmp_path / "runs", False, False, lambda: False, "auto", quiet())
    ahead = tune.member_config(cfg, tune._start_values(cfg, folder, True)[0], 20)
    assert tune.run_member(ahead, 0, folder, True, lambda: False, quiet()).iteration == 20
    before = lineage_rows(folder)
    args = ["tune", str(path), "--resume", "--iterations", "30", "--out", str(tmp_path / "runs")]
    assert main(args) == 0
    rows = lineage_rows(folder)
    assert rows[: len(before)] == before
    assert {int(r["iteration"]) for r in rows[len(before) :] if r["event"] == "copy"} == {20, 30}
    for k in range(2):
        _, meta = read_checkpoint(tune.member_dir(folder, k) / "checkpoint")
        assert meta["iteration"] == 30 and meta["finished"]
        assert len(csv_without_wall_time(folder, k)) == 30
    assert load_config(folder / "best_config.toml").tune is None
    assert (folder / "lineage.png").stat().st_size > 0


def test_the_exp5_example_trains_exp5_as_it_is() -> None:
    example = load_config(ROOT / "experiments" / "tune" / "exp5_pbt.toml")
    assert example.tune is not None and example.tune.population == 4
    assert (
        example.fingerprint()
        == load_config(ROOT / "experiments" / "exp5_big_honest.toml").fingerprint()
    )
