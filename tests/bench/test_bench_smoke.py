"""Every benchmark in bench/ still runs: tiny sizes, a real process, its table and its JSON.

Nothing is timed and no speed is checked; results go to a temporary ``CASI_BENCH_RESULTS``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.expensive  # each benchmark is a process with numba and torch in it

# script: (arguments, result file, lines of its table, top-level keys of the result file)
CASES: dict[str, tuple[list[str], str, list[str], set[str]]] = {
    "sim": (
        ["--seconds", "0", "--batches", "1", "16"],
        "sim.json",
        ["kernel cpu", "large (C6 d3 g2 m4 T20)", "cold compile"],
        {"machine", "unit", "rows", "compile", "targets"},
    ),
    "link": (
        ["--rounds", "2", "--block", "1", "--warmup", "1", "--seconds", "0", "--batch", "16"],
        "link-B16.json",
        ["agent-steps/s", "gRPC / in-process:", "round trip", "same agent-steps"],
        {
            "machine",
            "config",
            "batch",
            "learner_threads",
            "rounds",
            "block",
            "throughput",
            "predict",
            "targets",
            "iterations_done",
            "agent_steps_done",
            "same_work",
        },
    ),
    "profile_iteration": (
        ["--iterations", "2", "--warmup", "1", "--batch", "16"],
        "profile-B16.json",
        ["section", "RPC predict", "get_params", "total"],
        {"machine", "unit", "iterations", "batch", "sections", "raw"},
    ),
    "start": (
        ["--rounds", "1", "--iterations", "1"],
        "start.json",
        ["1st iteration", "attached", "peak RSS"],
        {"machine", "unit", "starts", "median", "memory", "targets"},
    ),
    "learn": (
        ["--seeds", "0", "--target", "0.01", "--iterations", "10"],
        "learn.json",
        ["agent-steps", "shipped", "small", "median"],
        {"machine", "config", "target_win_rate", "variants", "runs", "median", "targets"},
    ),
    "learn:exp5": (
        ["--config", "experiments/exp5_big_honest.toml", "--seeds", "0", "--target", "0.01"]
        + ["--iterations", "2"],
        "learn-exp5_big_honest.json",
        ["exp5_big_honest through gRPC", "shipped", "median"],
        {"machine", "config", "target_win_rate", "variants", "runs", "median", "targets"},
    ),
    "learn:exp7": (  # two learning agents: the target is met when both meet it
        ["--config", "experiments/exp7_prosocial.toml", "--seeds", "0", "--target", "0.01"]
        + ["--iterations", "2"],
        "learn-exp7_prosocial.json",
        ["exp7_prosocial through gRPC", "shipped", "median"],
        {"machine", "config", "target_win_rate", "variants", "runs", "median", "targets"},
    ),
    "scale": (
        ["--learners", "1", "2", "--batches", "16", "--batch", "16"]
        + ["--iterations", "1", "--warmup", "1"],
        "scale.json",
        ["learners: 8 agents", "batch: exp5_big_honest", "agent-steps/s", "lrn MB"],
        {"machine", "unit", "config", "iterations", "warmup", "learners", "batches"},
    ),
    "train": (  # HEAD's learner against this tree's: the same code unless the tree has changed
        ["--base", "HEAD", "--capture", "1", "--rounds", "2", "--block", "1", "--warmup", "1"],
        "train.json",
        ["wall ms", "head / base, cpu", "after 3 Train calls"],
        {"machine", "unit", "base", "head", "batches", "rounds", "block", "threads"}
        | {"modules", "ms", "cpu_ms", "head_over_base", "round_ratios", "train_calls"}
        | {"same_state"},
    ),
    "worlds": (
        ["--worlds", "exp2 world", "--iterations", "10", "--target", "0.01"]
        + ["--settings", "masked:algorithm.mask_pointless=true"],
        "worlds-masked.json",
        ["exp2 world", "4/2/1/4", "agent-steps"],
        {"machine", "config", "settings", "target_win_rate", "iterations_cap", "runs", "median"},
    ),
}
# learn.py also compares a variant, so that its --variant path runs too
CASES["learn"][0].extend(["--variant", "small:algorithm.batch=16"])


def _stamps(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*")} if folder.exists() else {}


def _not_json(constant: str) -> None:
    raise AssertionError(f"{constant} in a result file: strict JSON has no such number")


@pytest.mark.parametrize("name", list(CASES))
def test_the_benchmark_runs_and_writes_its_results(name: str, tmp_path: Path) -> None:
    args, result, table, keys = CASES[name]
    results, tmp = tmp_path / "results", tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CASI_TOKEN"}
    env.update(CASI_BENCH_RESULTS=str(results), TMPDIR=str(tmp))
    real = _stamps(ROOT / "bench" / "results")
    proc = subprocess.run(
        [sys.executable, f"bench/{name.split(':')[0]}.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{name}.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    for line in table:
        assert line in proc.stdout, f"{line!r} not in the output of {name}.py:\n{proc.stdout}"
    assert f"wrote {results / result}" in proc.stdout
    assert [p.name for p in results.glob("*.json")] == [result]
    report = json.loads((results / result).read_text(), parse_constant=_not_json)
    assert set(report) == keys
    assert report["machine"]["cores"] == os.cpu_count()
    assert _stamps(ROOT / "bench" / "results") == real  # the real results are untouched
