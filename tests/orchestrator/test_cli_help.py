"""``casi --version``, the exit statuses in ``--help`` and the metric names of ``plot``."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from casi_orchestrator import versions
from casi_orchestrator.exits import EXIT_SIGNAL_BASE, EXIT_USAGE, MEANINGS
from casi_orchestrator.metrics import EVAL_METRICS, LOSS_METRICS

ROOT = Path(__file__).resolve().parents[2]


def casi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "casi_orchestrator", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


def test_version_prints_every_casi_distribution_and_python() -> None:
    proc = casi("--version")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    names = ("casi-orchestrator", "casi-sim", "casi-proto", "casi-learner")
    assert lines[:4] == [f"{n} {metadata.version(n)}" for n in names]
    assert lines[4] == f"Python {platform.python_version()}"


def test_a_missing_distribution_is_said_to_be_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(versions, "DISTRIBUTIONS", ("casi-sim", "casi-no-such-thing"))
    lines = versions.versions_text().splitlines()
    assert lines[1] == "casi-no-such-thing not installed"


@pytest.mark.parametrize("command", [(), ("run",)], ids=["casi", "casi-run"])
def test_help_lists_the_exit_statuses(command: tuple[str, ...]) -> None:
    proc = casi(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "exit status:" in proc.stdout
    for code, meaning in MEANINGS.items():
        assert f"  {code:<4} {meaning}" in proc.stdout, code
    assert {130, 143} <= set(MEANINGS) and EXIT_SIGNAL_BASE == 128


def test_the_listed_usage_status_is_what_a_bad_command_line_gets() -> None:
    assert "command line" in MEANINGS[EXIT_USAGE]
    assert casi("run").returncode == EXIT_USAGE  # argparse: missing CONFIG
    assert casi("run", "no-such-file.toml").returncode == EXIT_USAGE


def test_plot_help_lists_the_metric_names() -> None:
    text = " ".join(casi("plot", "--help").stdout.split())
    for name in (*EVAL_METRICS, *LOSS_METRICS, "bonus"):
        assert name in text, name
