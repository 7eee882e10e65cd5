"""A trial resumed with a larger algorithm.iterations writes what a straight run that long
writes, backtracking included: the last iteration's extra evaluation feeds nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from casi_learner.scripted import ScriptedNet

from .test_trainer import config, run_trial, torch_nets, without_wall_time

# a constant metric: push at 2, then with these limits every later evaluation restarts,
# pops (once allowed) and stops; an evaluation at 3 would move every decision forward
BACKTRACKING = {"enabled": True, "pop_limit": 1, "restart_limit": 0, "unimproved_limit": 0}


def events(folder: Path) -> list[str]:
    return (folder / "trial-0" / "events.jsonl").read_text().splitlines()


def test_an_extended_run_equals_a_straight_run_with_backtracking(tmp_path: Path) -> None:
    def cfg(iterations: int):  # type: ignore[no-untyped-def]
        return config(
            tmp_path, algorithm={"iterations": iterations}, backtracking=BACKTRACKING,
            log={"learning": True, "interactions": True},
        )  # fmt: skip

    straight, full = run_trial(cfg(8), tmp_path / "a", {"a0": ScriptedNet("silent")})
    short, rows = run_trial(cfg(3), tmp_path / "b", {"a0": ScriptedNet("silent")})
    # the short run's last row still carries its final evaluation, and its result shows it
    assert rows[2]["a0.win_rate"] == "0.0" and rows[2]["a0.event"] == ""
    assert short.last_eval["a0"]["win_rate"] == 0.0
    extended, rows = run_trial(cfg(8), tmp_path / "b", {"a0": ScriptedNet("silent")}, True)
    assert not extended.already_done
    assert [r["a0.event"] for r in full] == ["", "push", "", "pop", "", "stop"]
    assert (extended.iteration, extended.stopped_early) == (straight.iteration, True)
    assert without_wall_time(rows) == without_wall_time(full)
    assert events(tmp_path / "b") == events(tmp_path / "a")


def test_resuming_a_finished_trial_keeps_its_final_evaluation(tmp_path: Path) -> None:
    cfg = config(tmp_path, algorithm={"iterations": 3}, backtracking=BACKTRACKING)
    _, rows = run_trial(cfg, tmp_path, {"a0": ScriptedNet("silent")})
    before = events(tmp_path)
    again, same = run_trial(cfg, tmp_path, {"a0": ScriptedNet("silent")}, resume=True)
    assert again.already_done and same == rows and events(tmp_path) == before
    assert again.last_eval["a0"]["win_rate"] == 0.0


@pytest.mark.expensive
def test_an_extended_torch_run_equals_a_straight_one(tmp_path: Path) -> None:
    def cfg(iterations: int):  # type: ignore[no-untyped-def]
        return config(
            tmp_path, agents=["learner", "random"], algorithm={"iterations": iterations},
            backtracking={"enabled": True, "unimproved_limit": 0, "restart_limit": 0},
        )  # fmt: skip

    _, full = run_trial(cfg(6), tmp_path / "a", torch_nets(["a0"]))
    run_trial(cfg(3), tmp_path / "b", torch_nets(["a0"]))
    _, rows = run_trial(cfg(6), tmp_path / "b", torch_nets(["a0"]), resume=True)
    assert without_wall_time(rows) == without_wall_time(full)
    assert events(tmp_path / "b") == events(tmp_path / "a")
