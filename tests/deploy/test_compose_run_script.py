"""scripts/compose-run.sh, the compose orchestrator's command, with a stand-in `casi` that
prints its arguments: --resume is added exactly when a trial of the run has a checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compose-run.sh"


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    casi = bin_dir / "casi"
    casi.write_text('#!/bin/sh\necho "casi $*"\n')
    casi.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    return bin_dir


def compose_run(bin_dir: Path, cwd: Path, *args: str) -> str:
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    done = subprocess.run(
        ["sh", str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.parametrize("out", [["--out", "o"], ["--out=o"]])
def test_resume_is_added_when_the_named_run_has_a_checkpoint(
    bin_dir: Path, tmp_path: Path, out: list[str]
) -> None:
    (tmp_path / "c.toml").write_text('name = "named"\n[algorithm]\nname = "not this"\n')
    assert compose_run(bin_dir, tmp_path, "c.toml", *out) == f"casi run c.toml {' '.join(out)}"
    (tmp_path / "o" / "named" / "trial-1" / "checkpoint").mkdir(parents=True)
    assert compose_run(bin_dir, tmp_path, "c.toml", *out).endswith(" --resume")


def test_without_a_name_the_file_stem_names_the_run(bin_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "exp.toml").write_text("seed = 1\n")
    (tmp_path / "runs" / "exp" / "trial-0" / "checkpoint.old").mkdir(parents=True)
    assert compose_run(bin_dir, tmp_path, "exp.toml") == "casi run exp.toml --resume"


def test_a_broken_config_is_left_to_casi_run_to_explain(bin_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("name = \n")
    assert compose_run(bin_dir, tmp_path, "bad.toml") == "casi run bad.toml"
