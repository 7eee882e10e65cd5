"""casi summary: the README's results table from iterations.csv files, checked by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
from casi_orchestrator.cli import main
from casi_orchestrator.summary import markdown_table, run_rows

HEADER = "iteration,agent_steps,wall_time,a0.win_rate,a0.questions,a0.return\n"


def write_trial(run: Path, k: int, rows: list[str]) -> None:
    folder = run / f"trial-{k}"
    folder.mkdir(parents=True)
    (folder / "iterations.csv").write_text(HEADER + "\n".join(rows) + "\n")


def test_rows_by_hand(tmp_path: Path) -> None:
    run = tmp_path / "exp"
    # trial 0 reaches 0.9 at iteration 3 (agent-steps 300, 30 s); trial 1 never does.
    write_trial(
        run, 0, ["1,100,10,,,", "2,200,20,0.5,2,100", "3,300,30,0.95,1,250", "4,400,40,0.9,1,260"]
    )
    write_trial(run, 1, ["1,100,12,0.1,3,0", "2,200,24,0.7,2,200"])
    [row] = run_rows(run, target=0.9)
    assert row[:3] == ["exp", "a0", "2"]
    assert row[3] == "0.80 ± 0.14"  # final win rates 0.9 and 0.7
    assert row[4] == "0.82 ± 0.18"  # best 0.95 and 0.7
    assert row[5:8] == ["1/2", "300", "30"]
    assert row[8] == "1.50 ± 0.71"  # final questions 1 and 2
    assert row[9] == "230.00 ± 42.43"  # final returns 260 and 200


def test_table_has_a_header_and_a_row_per_agent(tmp_path: Path) -> None:
    run = tmp_path / "exp"
    write_trial(run, 0, ["1,100,10,1.0,0,300"])
    lines = markdown_table([run], target=0.8).splitlines()
    assert lines[0].startswith("| run | agent | trials |") and "reached 0.8" in lines[0]
    assert lines[2] == "| exp | a0 | 1 | 1.00 | 1.00 | 1/1 | 100 | 10 | 0.00 | 300.00 |"


def test_a_folder_without_trials_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no trial-"):
        run_rows(tmp_path, 0.9)


def test_cli_prints_the_table_and_names_a_bad_folder(tmp_path: Path, capsys) -> None:
    run = tmp_path / "exp"
    write_trial(run, 0, ["1,100,10,1.0,0,300"])
    assert main(["summary", str(run)]) == 0
    assert "| exp | a0 | 1 |" in capsys.readouterr().out
    assert main(["summary", str(tmp_path / "nothing")]) == 1
    assert "nothing" in capsys.readouterr().err
