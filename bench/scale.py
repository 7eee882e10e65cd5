"""How the cost of a training iteration grows with the number of learners and with the batch.

Two sweeps, each point a trial of ``experiments/exp5_big_honest.toml``'s world (``attrs``
count 6, direct 3, goal 2, values 4; ``max_steps`` 12; ``init`` random) and its algorithm,
bonus and evaluation settings, with its own agents and batch:

- learners: 8 agents, ``k`` learners (``--learners``, default 1 2 4 8) and ``8 - k`` scripted
  ones cycling honest, liar, silent, random; batch ``--batch`` (256);
- batch: exp5's agents (1 learner + honest) at ``B`` = ``--batches`` (256 1024 4096).

Every learner is a local ``casi-learner`` subprocess reached over loopback gRPC, started by
the orchestrator's LearnerPool as ``casi run`` starts it (1 torch thread, cpu), and every
iteration is the Trainer's own ``run_iteration``. Each point runs in its own orchestrator
process (so that its peak memory is its own), all the points of a sweep alive at once: after
``--warmup`` untimed iterations (and one untimed evaluation) per point, the points take turns,
one iteration each, ``--iterations`` rounds (the order rotates each round), so every point
sees the same machine. Evaluation is off in those iterations (``eval.every`` is larger than
the run); one evaluation of exp5's 512 episodes per point is timed after them.

Reported per point: median seconds per iteration and its ``rollout`` (Predict, simulator,
sampling) and ``update`` (bonus, GAE, Train, GetParams) phases; median CPU seconds per
iteration of the orchestrator and of its learners together (less sensitive than wall time to
other work on the machine); training agent-steps per second (learning agents only); the
evaluation's seconds; peak resident memory (``VmHWM``) of the orchestrator and the sum over
its learners. Other load on the machine inflates the times (and the default sweeps keep 15
learner processes, some 6 GB, alive at once).

Prints a table per sweep and writes ``bench/results/scale.json``.
Run: ``.venv/bin/python bench/scale.py [--learners 1 2 4 8] [--batches 256 1024 4096]
[--batch 256] [--iterations 5] [--warmup 2]`` (an empty ``--learners`` or ``--batches``
skips that sweep).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import tempfile
import time
import tomllib
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from casi_orchestrator.config import RunConfig, validate_config
from casi_orchestrator.learners import LearnerPool
from casi_orchestrator.outputs import TrialOutput
from casi_orchestrator.trainer import Trainer
from common import ROOT, median, vm_hwm_mb, write_results

EXP5 = ROOT / "experiments" / "exp5_big_honest.toml"
AGENTS = 8
SCRIPTED = ("honest", "liar", "silent", "random")
NEVER = 10**9  # eval.every and algorithm.iterations: no evaluation inside the timed iterations
TICKS = os.sysconf("SC_CLK_TCK")


def learners_agents(k: int) -> list[str]:
    """``k`` learners, then scripted agents cycling honest, liar, silent, random: 8 in all."""
    return ["learner"] * k + [SCRIPTED[i % len(SCRIPTED)] for i in range(AGENTS - k)]


def point_config(agents: list[str], batch: int) -> RunConfig:
    """exp5_big_honest with these agents and this batch, evaluation never due."""
    data = tomllib.loads(EXP5.read_text())
    data["agents"] = agents
    data["algorithm"].update(batch=batch, iterations=NEVER)
    data["eval"]["every"] = NEVER
    return validate_config(data, str(EXP5))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class TimedTrainer(Trainer):
    """A Trainer that adds up the seconds of its rollout and update phases in ``phases``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phases = {"rollout_s": 0.0, "update_s": 0.0}

    def rollout(self, it: int) -> Any:
        t0 = time.perf_counter()
        try:
            return super().rollout(it)
        finally:
            self.phases["rollout_s"] += time.perf_counter() - t0

    def update(self, it: int, roll: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return super().update(it, roll)
        finally:
            self.phases["update_s"] += time.perf_counter() - t0


class Point:
    """One point of a sweep in this process: its learners started, its trainer ready."""

    def __init__(self, agents: list[str], batch: int, folder: Path) -> None:
        cfg = point_config(agents, batch)
        self.pool = LearnerPool(cfg.learners, folder)
        names = [spec.name for _, spec in cfg.learning_agents]
        for _, spec in cfg.learning_agents:
            self.pool.open(spec.name, spec.address)
        out = TrialOutput(folder / "trial-0", names, cfg.log.iteration_csv)
        self.trainer = TimedTrainer(cfg, 0, self.pool, out)
        self.trainer.start(resume=False)
        self.pids = [lr.process.pid for lr in self.pool.learners.values() if lr.process]

    def learners_cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def step(self) -> dict[str, float]:
        """One training iteration: its seconds, phases, CPU seconds and agent-steps."""
        trainer = self.trainer
        phases = trainer.phases = {key: 0.0 for key in trainer.phases}
        steps = trainer.state.agent_steps
        cpu, learners_cpu = time.process_time(), self.learners_cpu()
        t0 = time.perf_counter()
        trainer.run_iteration(trainer.iteration + 1)
        seconds = time.perf_counter() - t0
        return {
            "seconds": seconds,
            **phases,
            "cpu_orchestrator_s": time.process_time() - cpu,
            "cpu_learners_s": self.learners_cpu() - learners_cpu,
            "agent_steps": trainer.state.agent_steps - steps,
        }

    def evaluate(self) -> float:
        """Seconds of one evaluation (exp5's fixed episodes, greedy)."""
        t0 = time.perf_counter()
        self.trainer.evaluate(self.trainer.iteration)
        return time.perf_counter() - t0

    def memory(self) -> dict[str, Any]:
        """Peak resident memory (MB) of this orchestrator process and of each learner."""
        return {
            "orchestrator_mb": vm_hwm_mb(os.getpid()),
            "learner_mb": [vm_hwm_mb(pid) for pid in self.pids],
        }

    def close(self) -> None:
        self.trainer.out.close()
        self.trainer.close()
        self.pool.close()


def serve(conn: Connection, agents: list[str], batch: int) -> None:
    """The body of a point's process: answers ``step``, ``evaluate`` and ``memory`` until
    ``close`` (or the end of the pipe); an error is sent back as ``("error", traceback)``."""
    with tempfile.TemporaryDirectory() as tmp:
        point = None
        try:
            point = Point(agents, batch, Path(tmp))
            conn.send(("ok", None))
            while (request := conn.recv()) != "close":
                conn.send(("ok", getattr(point, request)()))
        except EOFError:
            pass
        except BaseException:
            conn.send(("error", traceback.format_exc()))
        finally:
            if point is not None:
                point.close()


class Worker:
    """A point's process, and calls to it."""

    def __init__(self, label: str, agents: list[str], batch: int) -> None:
        self.label, self.agents, self.batch = label, agents, batch
        spawn = multiprocessing.get_context("spawn")  # a fresh interpreter, as casi run is
        self.conn, child = spawn.Pipe()
        self.process = spawn.Process(
            target=serve, args=(child, agents, batch), name=f"scale-{label}"
        )
        self.process.start()
        child.close()
        self.answer()

    def answer(self) -> Any:
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise SystemExit(f"point {self.label}: its process died") from None
        if status == "error":
            raise SystemExit(f"point {self.label} failed:\n{value}")
        return value

    def call(self, request: str) -> Any:
        self.conn.send(request)
        return self.answer()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("close")
        self.process.join(120)
        if self.process.is_alive():
            self.process.terminate()  # its learners get SIGTERM when it dies
            self.process.join()
        self.conn.close()


def sweep(points: list[tuple[str, list[str], int]], iterations: int, warmup: int) -> list[Any]:
    """Every point's process up, warmed up; timed iterations in turns; one timed evaluation."""
    workers: list[Worker] = []
    try:
        for label, agents, batch in points:
            workers.append(Worker(label, agents, batch))
        for _ in range(warmup):
            for w in workers:
                w.call("step")
        for w in workers:
            w.call("evaluate")
        runs: dict[str, list[dict[str, float]]] = {w.label: [] for w in workers}
        for r in range(iterations):
            shift = r % len(workers)
            for w in workers[shift:] + workers[:shift]:
                runs[w.label].append(w.call("step"))
        return [summary(w, runs[w.label], w.call("evaluate"), w.call("memory")) for w in workers]
    finally:
        for w in workers:
            w.close()


def summary(
    w: Worker, runs: list[dict[str, float]], eval_s: float, memory: dict[str, Any]
) -> dict[str, Any]:
    learners = [mb for mb in memory["learner_mb"] if mb is not None]
    row: dict[str, Any] = {
        "label": w.label,
        "agents": w.agents,
        "learners": w.agents.count("learner"),
        "batch": w.batch,
    }
    for key in ("seconds", "rollout_s", "update_s", "cpu_orchestrator_s", "cpu_learners_s"):
        row[key] = median([x[key] for x in runs])
    row["agent_steps_per_s"] = median([x["agent_steps"] / x["seconds"] for x in runs])
    row |= {
        "eval_s": eval_s,
        "orchestrator_mb": memory["orchestrator_mb"],
        "learners_mb": sum(learners),
        "mb_per_learner": sum(learners) / len(learners) if learners else None,
        "learner_mb": memory["learner_mb"],
        "iterations": runs,
    }
    return row


COLUMNS = (
    ("s/iter", "seconds", ".3f"),
    ("rollout", "rollout_s", ".3f"),
    ("update", "update_s", ".3f"),
    ("cpu orch", "cpu_orchestrator_s", ".3f"),
    ("cpu lrn", "cpu_learners_s", ".3f"),
    ("agent-steps/s", "agent_steps_per_s", ",.0f"),
    ("eval s", "eval_s", ".2f"),
    ("orch MB", "orchestrator_mb", ".0f"),
    ("lrn MB", "learners_mb", ".0f"),
    ("MB/lrn", "mb_per_learner", ".0f"),
)


def print_table(title: str, key: str, rows: list[dict[str, Any]]) -> None:
    print(title)
    print(f"{key:>8}" + "".join(f"{name:>{len(name) + 3}}" for name, _, _ in COLUMNS))
    for row in rows:
        cells = (f"{row[k]:>{len(name) + 3}{fmt}}" for name, k, fmt in COLUMNS)
        print(f"{row[key]:>8}" + "".join(cells))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--batches", type=int, nargs="*", default=[256, 1024, 4096])
    parser.add_argument("--batch", type=int, default=256, help="batch of the learners sweep")
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations per point")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per point")
    args = parser.parse_args()
    if any(not 1 <= k <= AGENTS for k in args.learners):
        parser.error(f"--learners: each count must be between 1 and {AGENTS}")
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    agents = tomllib.loads(EXP5.read_text())["agents"]
    t0 = time.perf_counter()
    by_learners, by_batch = [], []
    if args.learners:
        points = [(f"k{k}", learners_agents(k), args.batch) for k in args.learners]
        by_learners = sweep(points, args.iterations, args.warmup)
    if args.batches:
        points = [(f"B{b}", agents, b) for b in args.batches]
        by_batch = sweep(points, args.iterations, args.warmup)
    medians = f"medians of {args.iterations} timed iterations (points in turns); s, MB peak RSS"
    print_table(
        f"learners: 8 agents, k learners + scripted (honest, liar, silent, random), "
        f"B = {args.batch}; {medians}",
        "learners",
        by_learners,
    )
    print_table(f"batch: exp5_big_honest (1 learner + honest); {medians}", "batch", by_batch)
    print(f"{time.perf_counter() - t0:.0f} s in all")
    write_results(
        "scale",
        {
            "unit": "seconds per iteration (medians), agent-steps per second, MB (VmHWM)",
            "config": "experiments/exp5_big_honest.toml's world and algorithm, eval off",
            "iterations": args.iterations,
            "warmup": args.warmup,
            "learners": by_learners,
            "batches": by_batch,
        },
    )


if __name__ == "__main__":
    main()
