"""exp2_honest through gRPC: an older commit of CASI against this tree, in one run.

Each side is a worker process running one trial of ``experiments/exp2_honest.toml`` with a
local ``casi-learner`` (as ``casi run`` starts it), the old one with ``PYTHONPATH`` pointing
at the four package folders of a git worktree of the old commit, the new one at this tree's.
They alternate in blocks of ``--block`` iterations (the order reverses every round), so both
see the same machine load. Reported: iterations/s per side (medians over blocks) and new / old
(the median of the per-round ratios).

    git worktree add /tmp/wt-old 79bea64
    .venv/bin/python bench/link_versions.py --old /tmp/wt-old [--new-learners pipeline=2]

Writes ``bench/results/link_versions.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import ROOT, median, write_results

PACKAGES = ("proto", "sim", "learner", "orchestrator", "bench")

WORKER = """
import json, sys
from pathlib import Path
from common import Session
args = json.loads(sys.argv[1])
s = Session(None, Path(args["folder"]), learners=args["learners"], algorithm=args["algorithm"])
print("ready", flush=True)
for line in sys.stdin:
    seconds, steps = 0.0, 0
    for _ in range(int(line)):
        dt, n = s.step()
        seconds, steps = seconds + dt, steps + n
    print(json.dumps({"seconds": seconds, "steps": steps, "it": s.trainer.iteration}), flush=True)
s.close()
"""


class Worker:
    """One side: a process that runs iterations when asked."""

    def __init__(self, label: str, tree: Path, folder: Path, learners: dict[str, Any]) -> None:
        self.label = label
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(tree / p) for p in PACKAGES))
        spec = {"folder": str(folder), "learners": learners, "algorithm": {}}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"the {label} worker did not start: {line!r}")

    def run(self, n: int) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(60)


def options(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs of [learners] keys (values read as JSON, else as strings)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="worktree of the old commit")
    parser.add_argument("--rounds", type=int, default=8, help="blocks per side")
    parser.add_argument("--block", type=int, default=10, help="iterations per block")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations per side")
    parser.add_argument(
        "--new-learners", nargs="*", default=["pipeline=2"], help="[learners] keys of the new side"
    )
    args = parser.parse_args()
    new_learners = options(args.new_learners)
    per: dict[str, list[float]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        workers = [
            Worker("old", args.old.resolve(), Path(tmp) / "old", {}),
            Worker("new", ROOT, Path(tmp) / "new", new_learners),
        ]
        try:
            for w in workers:
                w.run(args.warmup)
            done: dict[str, Any] = {}
            for r in range(args.rounds):
                for w in workers if r % 2 == 0 else workers[::-1]:
                    out = w.run(args.block)
                    per[w.label].append(args.block / out["seconds"])
                    done[w.label] = out
        finally:
            for w in workers:
                w.close()
    ratios = [n / o for o, n in zip(per["old"], per["new"], strict=True)]
    summary = {k: median(v) for k, v in per.items()}
    print(f"exp2_honest through gRPC, {args.rounds} blocks of {args.block} iterations per side")
    print(
        f"old ({args.old}): {summary['old']:.2f} it/s; new ({new_learners}): {summary['new']:.2f} it/s"
    )
    print(f"new / old: {median(ratios):.3f} (per round {min(ratios):.3f} .. {max(ratios):.3f})")
    write_results(
        "link_versions",
        {
            "old": str(args.old),
            "new_learners": new_learners,
            "rounds": args.rounds,
            "block": args.block,
            "it_per_s": per,
            "median": summary,
            "ratio": median(ratios),
            "ratios": ratios,
            "last": done,
        },
    )


if __name__ == "__main__":
    main()
