"""``[curriculum]``: stages of easier games of the same size before the config's own game.

Config errors name the stage and the key; a run changes its simulators at a stage change and
reports the stage; a resume across the change equals an uninterrupted run; without a
curriculum nothing in the outputs changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from casi_learner.scripted import ScriptedNet
from casi_orchestrator import sampling
from casi_orchestrator.config import ConfigError, RunConfig
from casi_orchestrator.curriculum import merge, stage_end
from casi_orchestrator.learners import LearnerPool
from casi_orchestrator.outputs import TrialOutput, csv_columns
from casi_orchestrator.trainer import Trainer

from .test_trainer import ALL_LOGS, Cheat, run_trial, torch_nets, without_wall_time
from .test_trainer import config as base_config

ATTRS = {"count": 4, "direct": 2, "goal": 2, "values": 4}  # goal 2: a stage can have 1
EASY = {"attrs": {"goal": 1}}


def config(tmp_path: Path, stages: list[dict[str, Any]] | None, **sections: Any) -> RunConfig:
    more = {"curriculum": {"stages": stages}} if stages is not None else {}
    return base_config(tmp_path, attrs=ATTRS, **more, **sections)


def errors(tmp_path: Path, stages: Any, **sections: Any) -> str:
    with pytest.raises(ConfigError) as info:
        config(tmp_path, stages, **sections)
    return "\n".join(info.value.lines)


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        (
            [{**EASY, "until_win_rate": 0.9}, {"agents": ["learner"], "iterations": 2}],
            "curriculum.stages.1.agents: unknown key; the keys of curriculum.stages.1 are "
            "max_steps, init, end_on_first_win, attrs, incentives, until_win_rate, iterations",
        ),
        (
            [{"attrs": {"goals": 1}, "iterations": 2}],
            "curriculum.stages.0.attrs.goals: unknown key; did you mean 'goal'?",
        ),
        (
            [{"incentives": {"cost_wrong_guess": 5}, "iterations": 2}],
            "curriculum.stages.0.incentives.cost_wrong_guess: unknown key; did you mean ",
        ),
        (
            [{"attrs": {"values": 8}, "iterations": 2}],
            "curriculum.stages.0.attrs.values: must be 4, the config's attrs.values (got 8): "
            "it would change obs_dim (114 -> 162) and the main action head (25 -> 41)",
        ),
        (
            [{"attrs": {"count": 5}, "iterations": 2}],
            "curriculum.stages.0.attrs.count: must be 4, the config's attrs.count (got 5)",
        ),
        (
            [{**EASY}],
            "curriculum.stages.0: a stage needs until_win_rate or iterations (or both)",
        ),
        (
            [{**EASY, "iterations": 2}, {"iterations": 2}],
            "curriculum.stages.1: a stage sets at least one game key",
        ),
        (
            [{"attrs": {"goal": 3}, "iterations": 2}],
            "curriculum.stages.0.attrs.goal: attrs.goal = 3 must be at most attrs.count - "
            "attrs.direct = 2",
        ),
        (
            [{"max_steps": "10", "iterations": 2}],
            "curriculum.stages.0.max_steps: expected an integer",
        ),
        (
            [{**EASY, "until_win_rate": 1.5}],
            "curriculum.stages.0.until_win_rate: Input should be less than or equal to 1",
        ),
        ([], "curriculum.stages: List should have at least 1 item"),
    ],
)
def test_a_bad_stage_is_refused_naming_it_and_the_key(
    tmp_path: Path, stages: Any, expected: str
) -> None:
    assert expected in errors(tmp_path, stages)


def test_a_stage_is_held_to_the_memory_budget(tmp_path: Path) -> None:
    text = errors(tmp_path, [{"max_steps": 10**9, "iterations": 2}])
    assert "curriculum.stages.0: algorithm.batch: the run would need about" in text


def test_stage_games_are_laid_over_the_config_and_fingerprinted(tmp_path: Path) -> None:
    stages = [{**EASY, "incentives": {"cost_incorrect_guess": 5.0}, "iterations": 2}]
    cfg = config(tmp_path, stages, incentives={"cost_ask_question": 1.0})
    stage, final = cfg.stage_game(0), cfg.stage_game(1)
    assert (stage.attrs.goal, stage.attrs.count, final.attrs.goal) == (1, 4, 2)
    assert stage.incentives.cost_incorrect_guess == 5.0 == final.incentives.cost_incorrect_guess / 4
    assert stage.incentives.cost_ask_question == 1.0  # the config's, kept
    assert final == cfg.game() and cfg.n_stages == 2
    assert cfg.fingerprint() != config(tmp_path, None).fingerprint()
    assert cfg.fingerprint() != config(tmp_path, [{**EASY, "iterations": 3}]).fingerprint()
    assert merge({"attrs": {"goal": 2, "count": 4}}, {"attrs": {"goal": 1}, "max_steps": 3}) == {
        "attrs": {"goal": 1, "count": 4},
        "max_steps": 3,
    }


def test_a_stage_ends_on_its_win_rate_or_its_iterations_whichever_is_first(
    tmp_path: Path,
) -> None:
    cur = config(tmp_path, [{**EASY, "until_win_rate": 0.9, "iterations": 5}]).curriculum
    assert cur is not None
    assert stage_end(cur, 0, 1, 2, [0.95]) is not None  # the win rate, early
    assert stage_end(cur, 0, 1, 2, [0.95, 0.5]) is None  # every agent must reach it
    assert stage_end(cur, 0, 1, 2, None) is None  # not evaluated
    assert stage_end(cur, 0, 1, 4, [0.2]) is None
    assert stage_end(cur, 0, 1, 5, [0.2]) == "5 iterations"
    assert stage_end(cur, 0, 3, 7, None) == "5 iterations"  # counted from the stage's start
    assert stage_end(cur, 1, 6, 1000, [1.0]) is None  # the config's own game never ends


def _trainer(cfg: RunConfig, folder: Path, net: Any) -> Trainer:
    pool = LearnerPool(cfg.learners, folder)
    pool.add("a0", net)
    trainer = Trainer(cfg, 0, pool, TrialOutput(folder / "trial-0", ["a0"]))
    trainer.start(resume=False)
    return trainer


def _goals(trainer: Trainer) -> set[int]:
    """The learner's number of goals in the episodes of the training and evaluation sims."""
    return {int(n) for n in trainer.sim.state()["goal"][:, 0].sum(axis=1)}


def test_the_simulators_change_with_the_stage(tmp_path: Path) -> None:
    cfg = config(tmp_path, [{**EASY, "iterations": 2}], log={"learning": True})
    trainer = _trainer(cfg, tmp_path, ScriptedNet("silent"))
    try:
        trainer.run_iteration(1)
        assert _goals(trainer) == {1} and trainer.state.stage == 0
        trainer.run_iteration(2)  # the stage's second and last iteration
        assert trainer.state.stage == 1 and trainer.state.stage_since == 3
        trainer.run_iteration(3)
        assert _goals(trainer) == {2}
        # the reported evaluation is in the config's own world throughout
        assert {int(n) for n in trainer.eval_sim.state()["goal"][:, 0].sum(axis=1)} == {2}
    finally:
        trainer.out.close()
        trainer.close()
    rows = (tmp_path / "trial-0" / "iterations.csv").read_text().splitlines()
    assert rows[0].endswith(",stage,a0.stage_win_rate")
    assert [r.split(",")[-2] for r in rows[1:]] == ["0", "0", "1"]
    events = [json.loads(line) for line in (tmp_path / "trial-0" / "events.jsonl").open()]
    changes = [e for e in events if e.get("event") == "stage"]
    assert changes == [
        {
            "stream": "learning", "iteration": 2, "event": "stage", "stage": 1,
            "reason": "2 iterations", "agent_steps": 160,
        }
    ]  # fmt: skip


def test_a_stage_ends_when_its_world_is_won(tmp_path: Path, capfd: Any) -> None:
    from casi_sim import BatchSim, guess_action

    # the stage: one goal, one fixed world, which Cheat wins at its first step
    stage = {**EASY, "init": "fixed", "until_win_rate": 0.9, "iterations": 100}
    cfg = config(tmp_path, [stage], algorithm={"iterations": 6})
    seed = sampling.derive_seed(cfg.seed, 0, sampling.WORLD)
    world = BatchSim(cfg.stage_game(0), batch=1, seed=seed)
    world.reset()
    state = world.state()
    goal = int(np.flatnonzero(state["goal"][0, 0])[0])
    guess = guess_action(cfg.game(), goal, int(state["values"][0, goal]))
    _, rows = run_trial(cfg, tmp_path, {"a0": Cheat(guess)})
    assert [r["stage"] for r in rows] == ["0", "0", "1", "1", "1", "1"]
    assert rows[1]["a0.stage_win_rate"] == "1.0"  # the stage's world: won every time
    assert float(rows[1]["a0.win_rate"]) < 0.5  # the config's world: two random goals
    assert [int(r["agent_steps"]) for r in rows[:2]] == [8, 16]  # one step per episode
    assert rows[3]["a0.stage_win_rate"] == ""  # the last stage is not evaluated twice
    err = capfd.readouterr().err
    assert "t trial 0: after iteration 2 (win rate >= 0.9 in the stage's world, 16 agent-" in err
    assert "stage 1 (the config's game)" in err


@pytest.mark.parametrize("stop_at", [2, 3])
def test_a_resume_across_the_stage_change_equals_an_uninterrupted_run(
    tmp_path: Path, stop_at: int
) -> None:
    stages = [{**EASY, "max_steps": 6, "until_win_rate": 0.99, "iterations": 3}]
    cfg = config(
        tmp_path, stages, algorithm={"iterations": 6}, checkpoint={"every": 100}, log=ALL_LOGS
    )
    _, full = run_trial(cfg, tmp_path / "a", torch_nets(["a0"]))
    assert [r["stage"] for r in full] == ["0", "0", "0", "1", "1", "1"]
    assert full[1]["a0.stage_win_rate"] != "" and full[3]["a0.stage_win_rate"] == ""
    partial, rows = run_trial(cfg, tmp_path / "b", torch_nets(["a0"]), stop_at=stop_at)
    assert partial.interrupted and len(rows) == stop_at
    resumed, rows = run_trial(cfg, tmp_path / "b", torch_nets(["a0"]), resume=True)
    assert resumed.iteration == 6
    assert without_wall_time(rows) == without_wall_time(full)
    events_a = (tmp_path / "a" / "trial-0" / "events.jsonl").read_text().splitlines()
    events_b = (tmp_path / "b" / "trial-0" / "events.jsonl").read_text().splitlines()
    assert events_a == events_b


def test_without_a_curriculum_the_outputs_are_as_before(tmp_path: Path) -> None:
    cfg = config(tmp_path, None, log={"learning": True})
    assert "curriculum" not in cfg.resolved()
    _, rows = run_trial(cfg, tmp_path, {"a0": ScriptedNet("silent")})
    assert list(rows[0]) == csv_columns(["a0"])
    events = (tmp_path / "trial-0" / "events.jsonl").read_text()
    assert '"event":"stage' not in events
    meta = json.loads((tmp_path / "trial-0" / "checkpoint" / "meta.json").read_text())
    assert "curriculum" not in meta["meta"]


def test_the_config_reference_lists_every_stage_key() -> None:
    from casi_orchestrator.config import StageCfg
    from casi_orchestrator.config_doc import render

    text = render()
    assert "\n## `[curriculum]`\n" in text
    for key in StageCfg.model_fields:
        assert f"| `{key}` |" in text.split("\n## A stage")[1], key
