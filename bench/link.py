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
raw forward pass (``TorchNet.predict`` called directly), alternating call by call, and against
the transport floor: a bare gRPC echo server in another process (no protobuf, no torch, no
Python work beyond returning bytes) sent and answering exactly as many bytes as Predict's
request and reply.

Prints two tables and writes ``bench/results/link.json`` (``link-B<batch>.json`` with
``--batch``).
Run: ``.venv/bin/python bench/link.py [--rounds R] [--block K] [--threads N] [--batch B]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from casi_proto import codec
from common import Session, median, write_results

BATCHES = (1, 64, 256, 1024, 4096)

# A bare gRPC server: the first 8 bytes of a request give the length of the reply.
ECHO_SERVER = """
import sys
from concurrent import futures
import grpc
replies = {}
def echo(request, context):
    n = int.from_bytes(request[:8], "little")
    if n not in replies:
        replies[n] = bytes(n)
    return replies[n]
same = lambda b: b
handler = grpc.method_handlers_generic_handler(
    "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo, same, same)}
)
limit = [("grpc.max_send_message_length", 1 << 28), ("grpc.max_receive_message_length", 1 << 28)]
server = grpc.server(futures.ThreadPoolExecutor(8), options=limit)
server.add_generic_rpc_handlers((handler,))
print(server.add_insecure_port("127.0.0.1:0"), flush=True)
server.start()
sys.stdin.read()
"""


class Echo:
    """A bare gRPC echo server in a subprocess, and a call to it."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ECHO_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        limit = 1 << 28
        options = [
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
        ]
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=options)
        same = lambda b: b  # noqa: E731
        self.call = self.channel.unary_unary("/bench.Echo/Echo", same, same)
        grpc.channel_ready_future(self.channel).result(timeout=30)

    def close(self) -> None:
        self.channel.close()
        self.proc.communicate(b"")  # stdin closed: the server exits


def echo_request(obs: np.ndarray, logits: np.ndarray, values: np.ndarray) -> bytes:
    """As many bytes as Predict's request, asking for as many as its reply."""
    sent = codec.observations_to_proto(obs).ByteSize()
    back = codec.predictions_to_proto(logits, values).ByteSize()
    return back.to_bytes(8, "little") + bytes(max(0, sent - 8))


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


def predict_rtt(
    client: Any, local: Any, echo: Echo, pool: np.ndarray, seconds: float
) -> list[dict[str, Any]]:
    """Median Predict round trip vs the raw forward pass and the bare echo, per batch size,
    call by call."""
    rng = np.random.default_rng(0)
    rows = []
    for batch in BATCHES:
        obs = np.ascontiguousarray(pool[rng.integers(0, len(pool), batch)])
        request = echo_request(obs, *local.predict(obs))
        for _ in range(3):
            client.predict(obs)
            local.predict(obs)
            echo.call(request)
        rtt, fwd, bare = [], [], []
        t_end = time.perf_counter() + seconds
        while len(rtt) < 20 or time.perf_counter() < t_end:
            t0 = time.perf_counter()
            client.predict(obs)
            t1 = time.perf_counter()
            local.predict(obs)
            t2 = time.perf_counter()
            echo.call(request)
            t3 = time.perf_counter()
            rtt.append(t1 - t0)
            fwd.append(t2 - t1)
            bare.append(t3 - t2)
        r, f, e = (1000 * median(x) for x in (rtt, fwd, bare))
        rows.append(
            {
                "batch": batch,
                "calls": len(rtt),
                "rtt_ms": r,
                "forward_ms": f,
                "overhead_ms": r - f,
                "echo_ms": e,
            }
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
            local, remote = (s.member.net for s in sessions)
            pool = sessions[1].trainer.sim.reset(0)[:, 0].copy()
            pool = np.concatenate([pool] * 16)
            echo = Echo()
            try:
                rtt = predict_rtt(remote, local, echo, pool, args.seconds)
            finally:
                echo.close()
            # the same seed and the same TorchNet code: both sides did exactly the same work
            steps = [s.trainer.state.agent_steps for s in sessions]
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
    print(
        "Predict round trip (gRPC) vs raw forward (TorchNet.predict), ms, medians; "
        "bare echo: the same bytes to and from a bare gRPC server"
    )
    print(
        f"{'B':>6}{'calls':>8}{'round trip':>12}{'forward':>10}{'overhead':>10}{'ratio':>8}"
        f"{'bare echo':>11}"
    )
    for r in rtt:
        print(
            f"{r['batch']:>6}{r['calls']:>8}{r['rtt_ms']:>12.3f}{r['forward_ms']:>10.3f}"
            f"{r['overhead_ms']:>10.3f}{r['rtt_ms'] / r['forward_ms']:>8.2f}{r['echo_ms']:>11.3f}"
        )


if __name__ == "__main__":
    main()
