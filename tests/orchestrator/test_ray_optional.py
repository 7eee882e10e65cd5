"""Ray is an optional extra: ``casi run`` without ``--ray`` never imports it; what ``--ray``
refuses before it starts Ray."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from casi_orchestrator.config import load_config
from rich.console import Console

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.expensive
def test_a_run_without_ray_imports_neither_ray_nor_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from casi_orchestrator.cli import main\n"
        f"code = main(['run', 'experiments/smoke.toml', '--iterations', '1', '--out', {str(tmp_path)!r}])\n"
        "assert code == 0, code\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'torch'})\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "smoke" / "trial-0" / "iterations.csv").is_file()


def test_trials_at_once_refuse_to_share_a_learner_given_by_address(tmp_path: Path) -> None:
    from casi_orchestrator.runner import run_experiment

    path = tmp_path / "tiny.toml"
    path.write_text(
        'name = "tiny"\nagents = [{ kind = "learner", address = "127.0.0.1:9" }, "honest"]\n'
        "max_steps = 10\nattrs = { count = 4, direct = 2, goal = 1, values = 4 }\n"
    )
    cfg = load_config(path)
    out = io.StringIO()
    code = run_experiment(
        cfg, tmp_path / "runs", 2, False, console=Console(file=out, width=300), ray_address="auto"
    )
    assert code == 1
    assert (
        "the trials would share the learner(s) given by address (a0=127.0.0.1:9)" in out.getvalue()
    )
    assert not (tmp_path / "runs" / "tiny" / "trial-0").exists()
