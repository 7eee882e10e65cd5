"""``casi run --trials 2 --ray`` as a user runs it: a local Ray of its own on 127.0.0.1, and a
SIGINT that stops every trial at a checkpoint (exit 130)."""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from casi_orchestrator.checkpoint import read_checkpoint

from ..conftest import RUN_WAIT, wait_until
from .test_ray import _descendants

pytest.importorskip("ray")
pytestmark = pytest.mark.expensive

ROOT = Path(__file__).resolve().parents[2]
LONG = """\
name = "long"
seed = 5
agents = ["learner", "honest"]
max_steps = 10
attrs = { count = 4, direct = 2, goal = 1, values = 4 }
[algorithm]
batch = 8
iterations = 100000
hidden_sizes = [16]
[eval]
every = 5
episodes = 8
[checkpoint]
every = 1000
"""


def _listening(pids: set[int]) -> list[str]:
    listing = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return [
        line.split()[3]
        for line in listing.splitlines()
        if {int(p) for p in re.findall(r"pid=(\d+)", line)} & pids
    ]


def test_ray_auto_starts_a_loopback_ray_and_a_signal_checkpoints_every_trial(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "long.toml"
    cfg.write_text(LONG)
    proc = subprocess.Popen(
        [sys.executable, "-m", "casi_orchestrator", "run", str(cfg), "--trials", "2",
         "--ray", "--out", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    paths = [tmp_path / "long" / f"trial-{k}" / "iterations.csv" for k in (0, 1)]

    def both_going() -> bool:
        return all(p.exists() and len(p.read_text().splitlines()) > 3 for p in paths)

    assert wait_until(both_going, RUN_WAIT, proc), "the trials did not run at once"
    addresses = _listening(_descendants(proc.pid))
    assert len(addresses) >= 3
    assert all(a.rsplit(":", 1)[0] in ("127.0.0.1", "[::ffff:127.0.0.1]") for a in addresses)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=RUN_WAIT)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert re.search(r"continue with: casi run .* --ray auto --resume", err), err[-3000:]
    assert re.search(r"long trial \d: iteration=\d+/", err), err[-3000:]
    assert "\x1b[" not in err, "colour codes in a log that is not a terminal"
    for k, path in enumerate(paths):
        _, meta = read_checkpoint(path.parent / "checkpoint")
        with open(path) as f:
            rows = list(csv.DictReader(f))
        assert meta["iteration"] == len(rows) >= 3 and meta["finished"] is False, k
