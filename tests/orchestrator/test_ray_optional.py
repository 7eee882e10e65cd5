"""Ray is an optional extra: ``casi run`` without ``--ray`` never imports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
