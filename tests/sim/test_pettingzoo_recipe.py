"""The recipe of docs/interop.md: examples/sb3_shared_policy.py trains two learners with
Stable-Baselines3 PPO for a few updates, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "sb3_shared_policy.py"


@pytest.mark.expensive
def test_sb3_recipe_trains_two_learners_for_a_few_updates(tmp_path):
    out = tmp_path / "evaluations.json"
    # 4 games = 8 slots, 64 steps each: 512 agent-steps per PPO update, 4 updates
    args = ["--timesteps", "2048", "--copies", "4", "--n-steps", "64"]
    args += ["--eval-every", "2048", "--eval-episodes", "16", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [x for x in done.stdout.splitlines() if x.startswith("agent-steps")]
    assert [int(x.split()[1]) for x in lines] == [0, 2048]
    assert all(" a0 win " in x and " a1 win " in x for x in lines)
    result = json.loads(out.read_text())
    assert result["game"]["agents"] == ["learner", "learner", "honest"]
    assert result["parameters_moved"] > 0.0
    first, last = result["evaluations"][0], result["evaluations"][-1]
    assert first["questions"] > 0, "the untrained policy asks questions"
    for key in ("a0_win", "a1_win"):
        assert 0.0 <= first[key] <= 1.0 and 0.0 <= last[key] <= 1.0
    assert first != last
