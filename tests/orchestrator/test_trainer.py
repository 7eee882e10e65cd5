"""The training loop against in-process learners: hand-computed metrics, backtracking,
exact resume and refused checkpoints."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from casi_learner.scripted import ScriptedNet
from casi_orchestrator import sampling
from casi_orchestrator.config import RunConfig, validate_config
from casi_orchestrator.learners import LearnerPool
from casi_orchestrator.outputs import TrialOutput, csv_columns
from casi_orchestrator.trainer import ResumeError, Trainer, TrialResult

GAME = {"max_steps": 10, "attrs": {"count": 4, "direct": 2, "goal": 1, "values": 4}}


def config(tmp_path: Path, **sections: Any) -> RunConfig:
    data: dict[str, Any] = {"seed": 3, "agents": ["learner", "honest"], **GAME}
    data["algorithm"] = {"batch": 8, "iterations": 4, "hidden_sizes": [16]}
    data["eval"] = {"every": 2, "episodes": 6}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return validate_config(data, str(tmp_path / "t.toml"))


def run_trial(
    cfg: RunConfig, folder: Path, nets: dict[str, Any], resume: bool = False, stop_at: int = 0
) -> tuple[TrialResult, list[dict[str, str]]]:
    pool = LearnerPool(cfg.learners, folder)
    for name, net in nets.items():
        pool.add(name, net)
    out = TrialOutput(folder / "trial-0", list(nets))
    trainer: Trainer | None = None

    def stop() -> bool:
        return bool(stop_at) and trainer is not None and trainer.iteration >= stop_at

    trainer = Trainer(cfg, 0, pool, out, stop)
    try:
        result = trainer.run(resume)
    finally:
        trainer.close()
    with open(folder / "trial-0" / "iterations.csv") as f:
        rows = list(csv.DictReader(f))
    return result, rows


def test_silent_learner_metrics_are_hand_computed(tmp_path: Path) -> None:
    # noop and ignore forever: never done before T, earns nothing, asks nothing
    cfg = config(tmp_path)
    result, rows = run_trial(cfg, tmp_path, {"a0": ScriptedNet("silent")})
    assert result.iteration == 4 and not result.interrupted
    assert [int(r["agent_steps"]) for r in rows] == [80, 160, 240, 320]  # 8 episodes x 10 steps
    assert [r["a0.return"] for r in rows] == ["", "0.0", "", "0.0"]
    assert rows[1]["a0.win_rate"] == "0.0" and rows[1]["a0.steps_to_win"] == ""
    assert rows[3]["a0.questions"] == "0.0"
    assert rows[0]["a0.policy_loss"] == "0.0" and rows[0]["a0.event"] == ""
    assert list(rows[0]) == csv_columns(["a0"])


def test_honest_learner_pays_for_every_unnecessary_reply(tmp_path: Path) -> None:
    # a complete-truth reply to a partner that asked nothing costs 20 points, every step
    cfg = config(tmp_path)
    _, rows = run_trial(cfg, tmp_path, {"a0": ScriptedNet("honest")})
    assert rows[1]["a0.return"] == "-200.0"
    assert rows[1]["a0.answers_complete_truth"] == "0.0"


def test_backtracking_pushes_then_stops_early(tmp_path: Path) -> None:
    # a constant metric: the first evaluation pushes; with every limit 0 the second one
    # restarts (1 > 0), which pops (1 > 0), which stops (1 > 0)
    cfg = config(
        tmp_path,
        eval={"every": 1},
        backtracking={"enabled": True, "pop_limit": 0, "restart_limit": 0, "unimproved_limit": 0},
        log={"learning": True},
    )
    result, rows = run_trial(cfg, tmp_path, {"a0": ScriptedNet("silent")})
    assert [r["a0.event"] for r in rows] == ["push", "stop"]
    assert result.stopped_early and result.iteration == 2
    events = (tmp_path / "trial-0" / "events.jsonl").read_text()
    assert '"event":"push","agent":"a0","metric":0.0' in events
    assert '"event":"stop","agent":"a0"' in events


def torch_nets(names: list[str]) -> dict[str, Any]:
    torch_net = pytest.importorskip("casi_learner.torch_net")
    return {n: torch_net.TorchNet(device="cpu", threads=1) for n in names}


def without_wall_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]


ALL_LOGS = {k: True for k in (
    "action_probs", "actions_rewards", "attrs", "encodings", "experiment_start", "interactions",
    "iteration_csv", "learning", "obs_summary", "trajectories",
)}  # fmt: skip


def test_resume_reproduces_an_uninterrupted_run(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        agents=["learner", "random", "learner"],
        algorithm={"iterations": 6},
        checkpoint={"every": 100},
        backtracking={"enabled": True, "unimproved_limit": 0, "restart_limit": 0},
        log=ALL_LOGS,
    )
    _, full = run_trial(cfg, tmp_path / "a", torch_nets(["a0", "a2"]))
    partial, rows = run_trial(cfg, tmp_path / "b", torch_nets(["a0", "a2"]), stop_at=3)
    assert partial.interrupted and partial.iteration == 3 and len(rows) == 3
    resumed, rows = run_trial(cfg, tmp_path / "b", torch_nets(["a0", "a2"]), resume=True)
    assert resumed.iteration == 6 and not resumed.interrupted
    assert without_wall_time(rows) == without_wall_time(full)
    events_a = (tmp_path / "a" / "trial-0" / "events.jsonl").read_text().splitlines()
    events_b = (tmp_path / "b" / "trial-0" / "events.jsonl").read_text().splitlines()
    assert events_a == events_b
    streams = {line.split('"stream":"')[1].split('"')[0] for line in events_a}
    assert streams == set(ALL_LOGS) - {"iteration_csv"}


def test_a_bad_checkpoint_is_refused_never_a_fresh_start(tmp_path: Path) -> None:
    cfg = config(tmp_path, algorithm={"iterations": 2})
    run_trial(cfg, tmp_path, {"a0": ScriptedNet("silent")})
    ckpt = tmp_path / "trial-0" / "checkpoint"
    changed = config(tmp_path, algorithm={"iterations": 2, "lr": 0.1})
    with pytest.raises(ResumeError, match="written by a different config"):
        run_trial(changed, tmp_path, {"a0": ScriptedNet("silent")}, resume=True)
    npz = ckpt / "arrays.npz"
    npz.write_bytes(npz.read_bytes()[:-10])
    with pytest.raises(ResumeError, match="arrays.npz"):
        run_trial(cfg, tmp_path, {"a0": ScriptedNet("silent")}, resume=True)


def test_resume_refuses_output_files_shorter_than_the_checkpoint(tmp_path: Path) -> None:
    cfg = config(tmp_path, algorithm={"iterations": 2})
    run_trial(cfg, tmp_path, {"a0": ScriptedNet("silent")})
    (tmp_path / "trial-0" / "iterations.csv").write_text("iteration\n")
    with pytest.raises(ResumeError, match="iterations.csv"):
        run_trial(cfg, tmp_path, {"a0": ScriptedNet("silent")}, resume=True)


def test_resume_of_a_finished_trial_changes_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path, algorithm={"iterations": 2})
    _, rows = run_trial(cfg, tmp_path, {"a0": ScriptedNet("silent")})
    shutil.copy(tmp_path / "trial-0" / "events.jsonl", tmp_path / "events.before")
    result, again = run_trial(cfg, tmp_path, {"a0": ScriptedNet("silent")}, resume=True)
    assert result.already_done and again == rows
    assert (tmp_path / "trial-0" / "events.jsonl").read_text() == (
        tmp_path / "events.before"
    ).read_text()


class Cheat(ScriptedNet):
    """Silent, but guesses the goal attribute's true value at the first step."""

    def __init__(self, guess: int) -> None:
        super().__init__("silent")
        self.guess = guess

    def predict(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, values = super().predict(obs)
        logits[:, 0] = -30.0
        logits[:, self.guess] = 0.0
        return logits, values


def test_a_learner_that_wins_at_once_acts_once_per_episode(tmp_path: Path) -> None:
    from casi_sim import BatchSim, guess_action

    cfg = config(tmp_path, init="fixed", log={"trajectories": True})
    # the world of trial 0 under init = fixed comes from this stream
    world = BatchSim(cfg.game(), batch=1, seed=sampling.derive_seed(cfg.seed, 0, sampling.WORLD))
    world.reset()
    state = world.state()
    goal = int(np.flatnonzero(state["goal"][0, 0])[0])
    guess = guess_action(cfg.game(), goal, int(state["values"][0, goal]))
    result, rows = run_trial(cfg, tmp_path / "run", {"a0": Cheat(guess)})
    # 8 episodes, one acted step each (the winning guess), then done
    assert [int(r["agent_steps"]) for r in rows] == [8, 16, 24, 32]
    assert rows[1]["a0.win_rate"] == "1.0" and rows[1]["a0.steps_to_win"] == "1.0"
    assert rows[1]["a0.return"] == "300.0"  # reward_correct 100 + reward_win 200
    assert result.agent_steps == 32
    events = (tmp_path / "run" / "trial-0" / "events.jsonl").read_text()
    # the honest partner pays 20 for replying to a learner that asked nothing
    assert f'"steps":[{{"t":0,"actions":{{"a0":[{guess},0,0]}},"rewards":[300.0,-20.0]}}' in events


def test_a_trial_ends_at_the_first_evaluation_that_meets_the_target(tmp_path: Path) -> None:
    from casi_sim import BatchSim, guess_action

    cfg = config(tmp_path, init="fixed", eval={"target_win_rate": 0.9})
    assert cfg.fingerprint() == config(tmp_path, init="fixed").fingerprint()
    world = BatchSim(cfg.game(), batch=1, seed=sampling.derive_seed(cfg.seed, 0, sampling.WORLD))
    world.reset()
    state = world.state()
    goal = int(np.flatnonzero(state["goal"][0, 0])[0])
    guess = guess_action(cfg.game(), goal, int(state["values"][0, goal]))
    result, rows = run_trial(cfg, tmp_path / "won", {"a0": Cheat(guess)})
    # evaluations at iterations 2 and 4: the first one already wins every episode
    assert result.iteration == 2 and len(rows) == 2 and not result.interrupted
    assert not result.stopped_early and rows[1]["a0.win_rate"] == "1.0"
    result, rows = run_trial(cfg, tmp_path / "lost", {"a0": ScriptedNet("silent")})
    assert result.iteration == 4 and len(rows) == 4


@pytest.mark.parametrize("recurrent", [False, True])
def test_init_hidden_is_sent_to_recurrent_models_only(tmp_path: Path, recurrent: bool) -> None:
    cfg = config(tmp_path, algorithm={"recurrent": recurrent})  # 4 iterations, 2 evaluations
    net = torch_nets(["a0"])["a0"]
    batches: list[int] = []
    init_hidden = net.init_hidden
    net.init_hidden = lambda batch: (batches.append(batch), init_hidden(batch))[1]
    result, _ = run_trial(cfg, tmp_path, {"a0": net})
    assert result.iteration == 4
    # a rollout of 8 episodes before each iteration, an evaluation of 6 after the 2nd and 4th
    assert batches == ([8, 8, 6, 8, 8, 6] if recurrent else [])
