"""Start-up time and memory of ``casi run experiments/exp2_honest.toml`` (SPEC 9).

- Start-up: seconds from launching ``casi run`` until its first iteration is in
  ``iterations.csv``, split at the moments the orchestrator reports ``learner a0: local
  subprocess`` (config read, modules imported) and ``learner a0: ready at`` (the learner process
  is up and answers its health check). ``cold``: a fresh, empty ``NUMBA_CACHE_DIR`` (every
  numba kernel is compiled); ``warm``: the same cache again (a second start); ``attached``: a
  second start with ``--learner a0=HOST:PORT``, a ``casi-learner`` that is already running (and
  served one run before). The three alternate, ``--rounds`` times.
- Memory: the peak resident set (``VmHWM`` in ``/proc/<pid>/status``) of the orchestrator and of
  its learner subprocess during a run of ``--iterations`` iterations.

Prints a table and writes ``bench/results/start.json``.
Run: ``.venv/bin/python bench/start.py [--rounds R] [--iterations N]``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import CASI, EXP2, ROOT, children, median, vm_hwm_mb, write_results

MARKS = {"modules": "learner a0: ", "learner_ready": "ready at"}


def launch(
    out: Path, iterations: int, cache: Path | None, learner: str | None = None
) -> dict[str, Any]:
    """One ``casi run``: marks (seconds since launch), first iteration, peak RSS of both."""
    env = dict(os.environ)
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = str(cache)
    cmd = [*CASI, "run", str(EXP2), "--out", str(out), "--iterations", str(iterations)]
    if learner is not None:
        cmd += ["--learner", f"a0={learner}"]
    csv_path = out / "exp2_honest" / "trial-0" / "iterations.csv"
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    marks: dict[str, float] = {}
    log: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            for key, text in MARKS.items():
                if key not in marks and text in line:
                    marks[key] = time.perf_counter() - t0

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    first = None
    peak = {"orchestrator_mb": 0.0, "learner_mb": 0.0}
    learner_pid = None
    while proc.poll() is None:
        if first is None and csv_path.exists() and csv_path.read_text().count("\n") >= 2:
            first = time.perf_counter() - t0
        learner_pid = learner_pid or next(iter(children(proc.pid)), None)
        for key, pid in (("orchestrator_mb", proc.pid), ("learner_mb", learner_pid)):
            mb = vm_hwm_mb(pid) if pid else None
            if mb is not None:
                peak[key] = max(peak[key], mb)
        time.sleep(0.01)
    reader.join(5)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{''.join(log)[-3000:]}")
    return {**marks, "first_iteration": first, "process": time.perf_counter() - t0, **peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="cold/warm pairs")
    parser.add_argument("--iterations", type=int, default=200, help="iterations of the RSS run")
    args = parser.parse_args()
    starts: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": [], "attached": []}
    learner = subprocess.Popen(
        [sys.executable, "-m", "casi_learner", "--port", "0", "--threads", "1", "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert learner.stdout is not None
        address = re.search(r"ready on (\S+)", learner.stdout.readline())
        if address is None:
            raise SystemExit("casi-learner did not start")
        with tempfile.TemporaryDirectory() as tmp:
            launch(Path(tmp) / "attached-first", 1, None, address.group(1))
            for r in range(args.rounds):
                cache = Path(tmp) / f"numba-{r}"
                cache.mkdir()
                for kind in ("cold", "warm", "attached"):
                    attach = address.group(1) if kind == "attached" else None
                    starts[kind].append(launch(Path(tmp) / f"{kind}-{r}", 1, cache, attach))
            memory = launch(Path(tmp) / "memory", args.iterations, None)
    finally:
        learner.terminate()
        learner.wait()
    keys = ("modules", "learner_ready", "first_iteration")
    table = {kind: {k: median([x[k] for x in xs]) for k in keys} for kind, xs in starts.items()}
    print(f"casi run exp2_honest: seconds from launch, medians of {args.rounds}")
    print(f"{'start':<8}{'modules':>10}{'learner up':>12}{'1st iteration':>15}")
    for kind, m in table.items():
        print(
            f"{kind:<8}{m['modules']:>10.2f}{m['learner_ready']:>12.2f}{m['first_iteration']:>15.2f}"
        )
    print(
        f"peak RSS (VmHWM) over {args.iterations} iterations: orchestrator "
        f"{memory['orchestrator_mb']:.0f} MB, learner {memory['learner_mb']:.0f} MB"
    )
    targets = {
        "second_start_below_3s": table["warm"]["first_iteration"] < 3.0,
        "learner_below_600MB": memory["learner_mb"] < 600,
        "orchestrator_below_400MB": memory["orchestrator_mb"] < 400,
    }
    print("targets:", ", ".join(f"{k}={'met' if v else 'MISSED'}" for k, v in targets.items()))
    write_results(
        "start",
        {
            "unit": "seconds since launch; MB",
            "starts": starts,
            "median": table,
            "memory": {"iterations": args.iterations, **memory},
            "targets": targets,
        },
    )


if __name__ == "__main__":
    main()
