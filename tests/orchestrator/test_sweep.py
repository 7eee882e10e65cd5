"""casi sweep: the end of each trial against a config value, hand-computed from real files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from casi_orchestrator.cli import main
from casi_orchestrator.metrics import csv_columns
from casi_orchestrator.sweep import sweep_points


def write_trial(folder: Path, alpha: float, evals: list[dict[str, float]]) -> None:
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(f"seed = 0\n[incentives]\nprosocial = {alpha}\n")
    columns = csv_columns(["alice"])
    with open(folder / "iterations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for i, metrics in enumerate(evals, start=1):
            writer.writerow({"iteration": i, "agent_steps": 10 * i, "wall_time": i}
                            | {f"alice.{k}": v for k, v in metrics.items()})  # fmt: skip
            writer.writerow({"iteration": i, "agent_steps": 10 * i + 5, "wall_time": i})


def test_the_end_is_the_mean_of_the_last_evaluations(tmp_path: Path) -> None:
    early = {"win_rate": 0.0, "answers_specific_lie": 5.0, "influence": 0.9}
    late = [
        {"win_rate": 0.5, "answers_complete_truth": 3.0, "answers_ignore": 1.0, "influence": 0.2},
        {"win_rate": 1.0, "answers_incomplete_truth": 1.0, "answers_general_lie": 3.0},
    ]
    write_trial(tmp_path / "a1" / "trial-0", 1.0, [early, *late])
    write_trial(tmp_path / "a0" / "trial-0", 0.0, [early])
    (p0,) = sweep_points([tmp_path / "a1", tmp_path / "a0"], "incentives.prosocial", last=1)[:1]
    assert (p0.value, p0.win, p0.lies, p0.truthful, p0.silent) == (0.0, 0.0, 1.0, 0.0, 0.0)
    p1 = sweep_points([tmp_path / "a1"], "incentives.prosocial", last=2)[0]
    # replies over the last two evaluations: truth 3 + 1, lies 3, silence 1 (empty cells are 0)
    assert p1.win == 0.75
    assert (p1.truthful, p1.lies, p1.silent) == (0.5, 0.375, 0.125)
    assert p1.influence == 0.2  # only one of the two evaluations measured it


def test_the_cli_prints_a_table_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_trial(tmp_path / "run" / "trial-0", 0.5, [{"win_rate": 0.25}])
    out = tmp_path / "sweep.png"
    assert (
        main(["sweep", str(tmp_path / "run"), "--key", "incentives.prosocial", "--out", str(out)])
        == 0
    )
    text = capsys.readouterr().out
    assert "| 0.5 | run | trial-0 | alice | 0.25 | – | – | – | – |" in text
    assert "| 0.5 | 1 | 0.25 | – | – | – | – |" in text
    assert out.stat().st_size > 0


def test_a_missing_key_or_run_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_trial(tmp_path / "run" / "trial-0", 0.5, [{"win_rate": 0.25}])
    assert main(["sweep", str(tmp_path / "run"), "--key", "incentives.nope"]) == 1
    assert "no key 'incentives.nope'" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "empty"), "--key", "seed"]) == 1
    assert "no trial-* folders" in capsys.readouterr().err
