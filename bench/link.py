"""The cost of the contract: exp2_honest in-process vs over loopback gRPC (SPEC 9).

Two trials of ``experiments/exp2_honest.toml`` (same seed, default batch of 256 episodes,
evaluation every 10 iterations as configured) run side by side in this process:

- ``in-process``: agent a0 at ``address = "inprocess"``, the learner's ``TorchNet`` called
  directly (no gRPC, no encoding);
- ``gRPC``: agent a0 as a local ``casi-learner`` subprocess on a loopback port, as
  ``casi run`` starts it.

They alternate in blocks of ``--block`` iterations (the side that goes first alternates too),
so both see the same machine load. Reported: iterations per second and training agent-steps
per second per side (medians over blocks) and gRPC / in-process (the median of the per-round
ratios). Then the Predict round-trip time by batch size (1, 64, 256, 1024, 4096) against the
raw forward pass (``TorchNet.predict`` called directly), alternating call by call.

Prints two tables and writes ``bench/results/link.json`` (``link-B<batch>.json`` with
``--batch``).
Run: ``.venv/bin/python bench/link.py [--rounds R] [--block K] [--threads N] [--batch B]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import Session, median, write_results

BATCHES = (1, 64, 256, 1024, 4096)


def throughput(sessions: list[Session], rounds: int, block: int) -> dict[str, Any]:
    """Blocks of ``block`` iterations per side, alternating; per-block rates."""
    per: dict[str, list[dict[str, float]]] = {s.label: [] for s in sessions}
    for r in range(rounds):
        order = sessions if r % 2 == 0 else sessions[::-1]
        for s in order:
            seconds, steps = 0.0, 0
            for _ in range(block):
                dt, n = s.step()
                seconds += dt
                steps += n
            per[s.label].append({"it_per_s": block / seconds, "steps_per_s": steps / seconds})
    a, b = (s.label for s in sessions)
    ratios = [y["it_per_s"] / x["it_per_s"] for x, y in zip(per[a], per[b], strict=True)]
    summary = {
        label: {
            "it_per_s": median([x["it_per_s"] for x in blocks]),
            "agent_steps_per_s": median([x["steps_per_s"] for x in blocks]),
        }
        for label, blocks in per.items()
    }
    return {"per_block": per, "median": summary, "ratio": median(ratios), "ratios": ratios}


def predict_rtt(client: Any, local: Any, pool: np.ndarray, seconds: float) -> list[dict[str, Any]]:
    """Median Predict round trip vs the raw forward pass, per batch size, call by call."""
    rng = np.random.default_rng(0)
    rows = []
    for batch in BATCHES:
        obs = np.ascontiguousarray(pool[rng.integers(0, len(pool), batch)])
        for _ in range(3):
            client.predict(obs)
            local.predict(obs)
        rtt, fwd = [], []
        t_end = time.perf_counter() + seconds
        while len(rtt) < 20 or time.perf_counter() < t_end:
            t0 = time.perf_counter()
            client.predict(obs)
            t1 = time.perf_counter()
            local.predict(obs)
            t2 = time.perf_counter()
            rtt.append(t1 - t0)
            fwd.append(t2 - t1)
        r, f = 1000 * median(rtt), 1000 * median(fwd)
        rows.append(
            {"batch": batch, "calls": len(rtt), "rtt_ms": r, "forward_ms": f, "overhead_ms": r - f}
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="blocks per side")
    parser.add_argument("--block", type=int, default=10, help="iterations per block")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations per side")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per Predict batch size")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads of both learners (default: config)"
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="episodes per iteration (default: config, 256)"
    )
    args = parser.parse_args()
    extra: dict[str, Any] = {}
    threads, batch = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        sessions = []
        try:
            for address in ("inprocess", None):
                folder = Path(tmp) / (address or "grpc")
                sessions.append(
                    Session(
                        address,
                        folder,
                        learners={"threads": args.threads},
                        algorithm={"batch": args.batch},
                    )
                )
            threads = sessions[0].cfg.learners.threads
            batch = sessions[0].cfg.algorithm.batch
            for s in sessions:
                for _ in range(args.warmup):
                    s.step()
            result = throughput(sessions, args.rounds, args.block)
            local, remote = (s.agent.learner.net for s in sessions)
            pool = sessions[1].trainer.sim.reset(0)[:, 0].copy()
            pool = np.concatenate([pool] * 16)
            rtt = predict_rtt(remote, local, pool, args.seconds)
            # the same seed and the same TorchNet code: both sides did exactly the same work
            steps = [s.trainer.agent_steps for s in sessions]
            extra = {
                "iterations_done": [s.trainer.iteration for s in sessions],
                "agent_steps_done": steps,
                "same_work": steps[0] == steps[1],
            }
        finally:
            for s in sessions:
                s.close()
    print_tables(result, rtt, args, threads, batch)
    print(f"same agent-steps on both sides (identical training): {extra['same_work']}")
    overhead_256 = next(r["overhead_ms"] for r in rtt if r["batch"] == 256)
    targets = {
        f"grpc_throughput_at_least_0.8x_inprocess_at_B{batch}": result["ratio"] >= 0.8,
        "predict_overhead_256_below_1ms": overhead_256 < 1.0,
    }
    print("targets:", ", ".join(f"{k}={'met' if v else 'MISSED'}" for k, v in targets.items()))
    write_results(
        "link" if args.batch is None else f"link-B{batch}",
        {
            "config": "experiments/exp2_honest.toml (T = 10)",
            "batch": batch,
            "learner_threads": threads,
            "rounds": args.rounds,
            "block": args.block,
            "throughput": result,
            "predict": rtt,
            "targets": targets,
            **extra,
        },
    )


def print_tables(
    result: dict[str, Any], rtt: list[dict[str, Any]], args: Any, threads: int, batch: int
) -> None:
    print(
        f"exp2_honest training (B = {batch}), {args.rounds} blocks of {args.block} iterations "
        f"per side, alternating; learner threads {threads}; medians"
    )
    print(f"{'side':<12}{'it/s':>10}{'agent-steps/s':>16}")
    for label, m in result["median"].items():
        print(f"{label:<12}{m['it_per_s']:>10.2f}{m['agent_steps_per_s']:>16,.0f}")
    lo, hi = min(result["ratios"]), max(result["ratios"])
    print(f"gRPC / in-process: {result['ratio']:.3f} (per round {lo:.3f} .. {hi:.3f})")
    print()
    print("Predict round trip (gRPC) vs raw forward (TorchNet.predict), ms, medians")
    print(f"{'B':>6}{'calls':>8}{'round trip':>12}{'forward':>10}{'overhead':>10}{'ratio':>8}")
    for r in rtt:
        print(
            f"{r['batch']:>6}{r['calls']:>8}{r['rtt_ms']:>12.3f}{r['forward_ms']:>10.3f}"
            f"{r['overhead_ms']:>10.3f}{r['rtt_ms'] / r['forward_ms']:>8.2f}"
        )


if __name__ == "__main__":
    main()
