"""The ``casi`` command: signals, trials, plot, and no torch in the orchestrator."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from casi_orchestrator.checkpoint import read_checkpoint

from ..conftest import RUN_WAIT, wait_until

ROOT = Path(__file__).resolve().parents[2]
CASI = [sys.executable, "-m", "casi_orchestrator"]


def test_the_orchestrator_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "import casi_orchestrator, casi_orchestrator.cli, casi_orchestrator.runner\n"
        "import casi_orchestrator.trainer, casi_orchestrator.learners, casi_orchestrator.config\n"
        "from casi_orchestrator.config import load_config\n"
        "load_config('experiments/smoke.toml')\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


LONG = """\
seed = 2
agents = ["learner", "honest"]
max_steps = 10
attrs = { count = 4, direct = 2, goal = 1, values = 4 }
[algorithm]
batch = 16
iterations = 100000
hidden_sizes = [16]
[eval]
every = 5
episodes = 16
[checkpoint]
every = 1000
"""


@pytest.mark.expensive
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_checkpoints_and_exits_128_plus_signum(tmp_path: Path, sig: int) -> None:
    cfg = tmp_path / "long.toml"
    cfg.write_text(LONG)
    proc = subprocess.Popen(
        [*CASI, "run", str(cfg), "--out", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    csv_path = tmp_path / "long" / "trial-0" / "iterations.csv"

    def rows_written() -> bool:
        return csv_path.exists() and len(csv_path.read_text().splitlines()) > 3

    assert wait_until(rows_written, RUN_WAIT, proc), "no rows before the signal"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=RUN_WAIT)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert "Traceback" not in err
    _, meta = read_checkpoint(tmp_path / "long" / "trial-0" / "checkpoint")
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    # the checkpoint (every 1000) was written because of the signal, and covers every row
    assert meta["iteration"] == len(rows) >= 3 and meta["finished"] is False
    resumed = subprocess.run(
        [*CASI, "run", str(cfg), "--out", str(tmp_path), "--resume",
         "--iterations", str(meta["iteration"] + 2)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with open(csv_path) as f:
        assert [r["iteration"] for r in csv.DictReader(f)][-3:] == [
            str(meta["iteration"] + i) for i in range(3)
        ]


@pytest.mark.expensive
def test_trials_and_plot(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*CASI, "run", "experiments/smoke.toml", "--trials", "2", "--iterations", "2",
         "--out", str(tmp_path), "--learner", "a0=inprocess", "--seed", "9"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "smoke"
    assert sorted(p.name for p in run.glob("trial-*")) == ["trial-0", "trial-1"]
    first = (run / "trial-0" / "iterations.csv").read_text()
    second = (run / "trial-1" / "iterations.csv").read_text()
    assert first.splitlines()[0] == second.splitlines()[0] and first != second
    assert "seed = 9" in (run / "trial-1" / "config.toml").read_text()
    out = tmp_path / "plot.png"
    plot = subprocess.run(
        [*CASI, "plot", str(run), "--metric", "return", "--ewma", "0.5", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert plot.returncode == 0, plot.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = subprocess.run([*CASI, "plot", str(tmp_path / "nope")], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 2 and "no such run folder" in missing.stderr
