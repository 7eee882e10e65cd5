"""Simulator benchmark: the numba kernel vs the pure-Python reference (SPEC 9).

Agent-steps per second of random play, observations included, one reset per episode, for
the experiment game and a larger one at B = 1, 256, 4096:

- ``kernel``: the numba kernels called on preallocated arrays (what a rollout loop pays);
- ``batchsim``: ``BatchSim.reset``/``step`` (adds input checks and fresh output arrays);
- ``reference``: ``casi_sim.reference.ReferenceSim``, the readable rules.

Plus the kernel's compile time in a fresh process with an empty cache (cold) and its load
time from the cache (warm). Prints a table and writes ``bench/results/sim.json``.
Run: ``.venv/bin/python bench/sim.py [--seconds S] [--batches B ...]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
from casi_sim import GUESS_OUTCOMES, N_INTENTIONS, BatchSim, GameConfig, kernel
from casi_sim.reference import ReferenceSim
from common import write_results

GAMES = {
    "exp (C4 d2 g1 m4 T10)": GameConfig(
        agents=["learner", "honest"],
        max_steps=10,
        attrs={"count": 4, "direct": 2, "goal": 1, "values": 4},
    ),
    "large (C6 d3 g2 m4 T20)": GameConfig(
        agents=["learner", "honest"],
        max_steps=20,
        attrs={"count": 6, "direct": 3, "goal": 2, "values": 4},
    ),
}
BATCHES = (1, 256, 4096)

COMPILE_SNIPPET = """
import time
t0 = time.perf_counter()
import numpy as np
from casi_sim import BatchSim, GameConfig
t1 = time.perf_counter()
cfg = GameConfig(agents=["learner", "random"], max_steps=10,
                 attrs={"count": 4, "direct": 2, "goal": 1, "values": 4})
sim = BatchSim(cfg, 2, seed=0)
sim.reset()
sim.step(np.zeros((2, 2), np.int64), np.zeros((2, 2, 2), np.int64))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def actions(cfg: GameConfig, batch: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """One episode of uniform random learner actions, drawn before timing."""
    gen = np.random.default_rng(seed)
    na = cfg.n_agents
    return [
        (
            gen.integers(0, cfg.n_main_actions, (batch, na)),
            gen.integers(0, cfg.n_intentions, (batch, na, na)),
        )
        for _ in range(cfg.max_steps)
    ]


def kernel_episode(sim: BatchSim, plan: list[tuple[np.ndarray, np.ndarray]]) -> Callable[[], None]:
    """An episode through the kernels on preallocated arrays, as a rollout loop would run it."""
    b, na, dim = sim.batch, sim.n_agents, sim.obs_dim
    obs = np.empty((b, na, dim), np.float32)
    out = kernel.Outputs(
        reward=np.empty((b, na), np.float32),
        done=np.empty((b, na), np.bool_),
        asked=np.empty((b, na), np.int32),
        asked_self=np.empty((b, na), np.int32),
        answers=np.empty((b, na, N_INTENTIONS), np.int32),
        unnecessary=np.empty((b, na), np.int32),
        guesses=np.empty((b, na, len(GUESS_OUTCOMES)), np.int32),
        won=np.empty((b, na), np.bool_),
        own_reward=np.empty((b, na), np.float32),
    )
    state = sim._state  # the game, the state and the scratch, as plain tuples
    steps = [kernel.plain(kernel.Actions(main, intentions), out) for main, intentions in plan]
    epoch = [0]

    def run() -> None:
        epoch[0] += 1
        kernel.reset_kernel(*state, obs, np.uint64(1), epoch[0], np.uint64(1))
        for actions_and_out in steps:
            kernel.step_kernel(*state, obs, *actions_and_out)

    return run


def adapter_episode(sim, plan: list[tuple[np.ndarray, np.ndarray]]) -> Callable[[], None]:
    def run() -> None:
        sim.reset()
        for main, intentions in plan:
            sim.step(main, intentions)

    return run


def rate(run: Callable[[], None], agent_steps: int, seconds: float) -> dict[str, float]:
    """Agent-steps per second of wall time and of process CPU time, over whole episodes."""
    run()  # warm up (compile or load, first-touch memory)
    episodes, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while episodes < 2 or time.perf_counter() - wall0 < seconds:
        run()
        episodes += 1
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"wall": episodes * agent_steps / wall, "cpu": episodes * agent_steps / cpu}


def measure_speed(seconds: float, batches: list[int]) -> list[dict]:
    rows = []
    for name, cfg in GAMES.items():
        for batch in batches:
            plan = actions(cfg, batch, seed=batch)
            agent_steps = batch * cfg.n_agents * cfg.max_steps
            row: dict = {"game": name, "batch": batch}
            row["kernel"] = rate(kernel_episode(BatchSim(cfg, batch), plan), agent_steps, seconds)
            row["batchsim"] = rate(
                adapter_episode(BatchSim(cfg, batch), plan), agent_steps, seconds
            )
            row["reference"] = rate(
                adapter_episode(ReferenceSim(cfg, batch), plan), agent_steps, seconds
            )
            row["kernel_over_reference"] = row["kernel"]["wall"] / row["reference"]["wall"]
            rows.append(row)
            print_row(row)
    return rows


def measure_compile() -> dict[str, float]:
    """Cold: a fresh process and an empty NUMBA_CACHE_DIR; warm: the same cache, again."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        times = []
        for _ in range(2):
            out = subprocess.run(
                [sys.executable, "-c", COMPILE_SNIPPET],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            times.append([float(x) for x in out.stdout.split()])
    (import_cold, cold), (import_warm, warm) = times
    return {"import_s": import_warm, "cold_compile_s": cold, "warm_cache_load_s": warm}


def print_row(row: dict) -> None:
    def fmt(x: float) -> str:
        return f"{x:>12,.0f}"

    print(
        f"{row['game']:<25} {row['batch']:>5} {fmt(row['kernel']['wall'])} "
        f"{fmt(row['batchsim']['wall'])} {fmt(row['reference']['wall'])} "
        f"{row['kernel_over_reference']:>8.0f}x {fmt(row['kernel']['cpu'])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument(
        "--batches", type=int, nargs="+", default=list(BATCHES), help="batch sizes B"
    )
    args = parser.parse_args()
    print("agent-steps per second (wall), random play, observations included")
    print(
        f"{'game':<25} {'B':>5} {'kernel':>12} {'batchsim':>12} {'reference':>12} "
        f"{'ratio':>9} {'kernel cpu':>12}"
    )
    rows = measure_speed(args.seconds, args.batches)
    compile_times = measure_compile()
    print(
        f"import {compile_times['import_s']:.2f} s, cold compile "
        f"{compile_times['cold_compile_s']:.2f} s, warm cache load "
        f"{compile_times['warm_cache_load_s']:.2f} s"
    )
    big = [r for r in rows if r["batch"] == 4096]
    targets = {
        "kernel_4096_at_least_1e7": all(r["kernel"]["wall"] >= 1e7 for r in big),
        "kernel_4096_at_least_200x_reference": all(r["kernel_over_reference"] >= 200 for r in big),
    }
    if not big:  # the targets are about B = 4096
        targets = {}
    verdicts = ", ".join(f"{k}={'met' if v else 'MISSED'}" for k, v in targets.items())
    print("targets:", verdicts or "none (B = 4096 not measured)")
    write_results(
        "sim",
        {
            "unit": "agent-steps per second",
            "rows": rows,
            "compile": compile_times,
            "targets": targets,
        },
    )


if __name__ == "__main__":
    main()
