"""The cost of the contract: exp2_honest in-process vs over loopback gRPC (SPEC 9).

Four trials of ``experiments/exp2_honest.toml`` (same seed, default batch of 256 episodes,
evaluation every 10 iterations as configured) run side by side in this process:

- ``in-process``: agent a0 at ``address = "inprocess"``, the learner's ``TorchNet`` called
  directly (no gRPC, no encoding);
- ``gRPC``: agent a0 as a local ``casi-learner`` subprocess on a loopback port, as
  ``casi run`` starts it (Predict over the Act stream);
- ``in-process ||`` and ``gRPC ||``: the same with ``[learners] pipeline = 2`` (the rollout in
  two parts, one part's Predict in flight while the other is sampled and stepped; in-process
  the forward pass runs in a pool thread).

They alternate in blocks of ``--block`` iterations (the order reverses every round), so all
see the same machine load. Reported: iterations per second and training agent-steps per
second per side (medians over blocks) and gRPC / in-process, unpipelined and pipelined (the
medians of the per-round ratios). Then the Predict round-trip time by batch size (1, 64, 256,
1024, 4096) against the raw forward pass (``TorchNet.predict`` called directly), alternating
call by call: unary Predict, one request on the Act stream, and the per-step cost of the
pipelined stream (two half batches in flight, the next sent as soon as one is answered);
against the transport floor too: a bare gRPC echo server in another process (no protobuf, no
torch, no Python work beyond returning bytes) sent and answering exactly as many bytes as
Predict's request and reply.

Prints two tables and writes ``bench/results/link.json`` (``link-B<batch>.json`` with
``--batch``).
Run: ``.venv/bin/python bench/link.py [--rounds R] [--block K] [--threads N] [--batch B]``.
"""

from __future__ import annotations

import argparse
import os
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


SIDES = (("in-process", "inprocess", 1), ("gRPC", None, 1), ("in-process ||", "inprocess", 2))
SIDES += (("gRPC ||", None, 2),)
PAIRS = (("gRPC", "in-process"), ("gRPC ||", "in-process ||"), ("gRPC ||", "gRPC"))


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
    ratios = {
        f"{a} / {b}": [x["it_per_s"] / y["it_per_s"] for x, y in zip(per[a], per[b], strict=True)]
        for a, b in PAIRS
        if a in per and b in per
    }
    summary = {
        label: {
            "it_per_s": median([x["it_per_s"] for x in blocks]),
            "agent_steps_per_s": median([x["steps_per_s"] for x in blocks]),
        }
        for label, blocks in per.items()
    }
    return {
        "per_block": per,
        "median": summary,
        "ratio": {k: median(v) for k, v in ratios.items()},
        "ratios": ratios,
    }


def predict_rtt(
    client: Any,
    local: Any,
    echo: Echo,
    pool: np.ndarray,
    seconds: float,
    learner_pid: int | None = None,
) -> list[dict[str, Any]]:
    """Median Predict round trip (unary, and on the Act stream) and per-step cost of the
    pipelined stream vs the raw forward pass and the bare echo, per batch size, in turns."""
    rng = np.random.default_rng(0)
    rows = []
    for batch in BATCHES:
        obs = np.ascontiguousarray(pool[rng.integers(0, len(pool), batch)])
        rows.append(_rtt_row(client, local, echo, obs, seconds, learner_pid))
    return rows


STEPS = 4  # steps of the pipelined stream per timed call


def _rtt_row(
    client: Any, local: Any, echo: Echo, obs: np.ndarray, seconds: float, learner_pid: int | None
) -> dict[str, Any]:
    calls = _calls(client, local, echo, obs)
    times, cpu = _timed(calls, seconds, learner_pid)
    m = {k: 1000 * median(v) for k, v in times.items()}
    per_call = {k: [1000 * x / len(times[k]) for x in v] for k, v in cpu.items()}
    m["piped"] /= STEPS
    per_call["piped"] = [x / STEPS for x in per_call["piped"]]
    f = m["forward"]
    return {
        "batch": len(obs),
        "calls": len(times["unary"]),
        "rtt_ms": m["unary"],
        "stream_ms": m["stream"],
        "piped_step_ms": m["piped"],
        "forward_ms": f,
        "overhead_ms": m["unary"] - f,
        "stream_overhead_ms": m["stream"] - f,
        "piped_overhead_ms": m["piped"] - f,
        "echo_ms": m["echo"],
        "cpu_ms": {k: {"client": v[0], "learner": v[1]} for k, v in per_call.items()},
    }


def _calls(client: Any, local: Any, echo: Echo, obs: np.ndarray) -> dict[str, Any]:
    """The calls timed: unary Predict, Predict on the stream, STEPS pipelined steps (two
    halves in flight), the raw forward, the bare echo."""
    batch = len(obs)
    halves = [np.ascontiguousarray(obs[: batch // 2]), np.ascontiguousarray(obs[batch // 2 :])]
    request = echo_request(obs, *local.predict(obs))
    steps = STEPS

    def unary() -> None:
        client.use_stream = False
        try:
            client.predict(obs)
        finally:
            client.use_stream = True

    def piped() -> None:
        if batch < 2:
            for _ in range(steps):
                client.predict(obs)
            return
        flying = [client.predict_async(h) for h in halves]
        for step in range(steps):
            for k in (0, 1):
                flying[k].result()
                if step + 1 < steps:
                    flying[k] = client.predict_async(halves[k])

    calls = {
        "unary": unary,
        "stream": lambda: client.predict(obs),
        "piped": piped,
        "forward": lambda: local.predict(obs),
        "echo": lambda: echo.call(request),
    }
    return calls


def _timed(
    calls: dict[str, Any], seconds: float, learner_pid: int | None
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall times of every call, and CPU seconds (this process, the learner) per kind."""
    for _ in range(3):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {k: [] for k in calls}
    cpu = {k: [0.0, 0.0] for k in calls}
    t_end = time.perf_counter() + seconds
    while len(times["unary"]) < 20 or time.perf_counter() < t_end:
        for name, call in calls.items():  # blocks of 10 calls, for CPU times to add up
            c0, l0 = time.process_time(), cpu_seconds(learner_pid)
            for _ in range(10):
                t0 = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - t0)
            cpu[name][0] += time.process_time() - c0
            cpu[name][1] += cpu_seconds(learner_pid) - l0
    return times, cpu


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (Linux; 0 without a pid)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
            for label, address, parts in SIDES:
                folder = Path(tmp) / f"{address or 'grpc'}-{parts}"
                session = Session(
                    address,
                    folder,
                    learners={"threads": args.threads, "pipeline": parts},
                    algorithm={"batch": args.batch},
                )
                session.label = label
                sessions.append(session)
            threads = sessions[0].cfg.learners.threads
            batch = sessions[0].cfg.algorithm.batch
            for s in sessions:
                for _ in range(args.warmup):
                    s.step()
            result = throughput(sessions, args.rounds, args.block)
            local, remote = sessions[0].member.net, sessions[1].member.net
            pool = sessions[1].trainer.sim.reset(0)[:, 0].copy()
            pool = np.concatenate([pool] * 16)
            echo = Echo()
            try:
                process = sessions[1].pool.learners["a0"].process
                pid = process.pid if process is not None else None
                rtt = predict_rtt(remote, local, echo, pool, args.seconds, pid)
            finally:
                echo.close()
            # the same seed and the same TorchNet code: every side did exactly the same work
            steps = [s.trainer.state.agent_steps for s in sessions]
            extra = {
                "iterations_done": [s.trainer.iteration for s in sessions],
                "agent_steps_done": steps,
                "same_work": len(set(steps)) == 1,
            }
        finally:
            for s in sessions:
                s.close()
    print_tables(result, rtt, args, threads, batch)
    print(f"same agent-steps on every side (identical training): {extra['same_work']}")
    at_256 = next((r for r in rtt if r["batch"] == 256), rtt[0])
    targets = {
        f"grpc_throughput_at_least_0.9x_inprocess_pipelined_at_B{batch}": result["ratio"].get(
            "gRPC || / in-process ||", 0.0
        )
        >= 0.9,
        "stream_step_overhead_256_below_0.3ms": at_256["piped_overhead_ms"] < 0.3,
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
        f"per side, alternating; learner threads {threads}; medians (||: pipeline = 2)"
    )
    print(f"{'side':<16}{'it/s':>10}{'agent-steps/s':>16}")
    for label, m in result["median"].items():
        print(f"{label:<16}{m['it_per_s']:>10.2f}{m['agent_steps_per_s']:>16,.0f}")
    for name, ratio in result["ratio"].items():
        lo, hi = min(result["ratios"][name]), max(result["ratios"][name])
        print(f"{name}: {ratio:.3f} (per round {lo:.3f} .. {hi:.3f})")
    print()
    print(
        "Predict vs raw forward (TorchNet.predict), ms, medians: unary round trip, one request "
        "on the Act stream, per step of the pipelined stream (two halves in flight); "
        "bare echo: the same bytes to and from a bare gRPC server"
    )
    print(
        f"{'B':>6}{'calls':>7}{'forward':>9}{'unary':>8}{'+':>7}{'stream':>8}{'+':>7}"
        f"{'piped/step':>11}{'+':>7}{'echo':>8}"
    )
    for r in rtt:
        print(
            f"{r['batch']:>6}{r['calls']:>7}{r['forward_ms']:>9.3f}{r['rtt_ms']:>8.3f}"
            f"{r['overhead_ms']:>7.3f}{r['stream_ms']:>8.3f}{r['stream_overhead_ms']:>7.3f}"
            f"{r['piped_step_ms']:>11.3f}{r['piped_overhead_ms']:>7.3f}{r['echo_ms']:>8.3f}"
        )
    print()
    print("CPU ms per call (per step for piped): this process + the learner's process")
    print(f"{'B':>6}" + "".join(f"{k:>18}" for k in ("unary", "stream", "piped", "forward")))
    for r in rtt:
        cells = [r["cpu_ms"][k] for k in ("unary", "stream", "piped", "forward")]
        text = "".join(f"{c['client']:>9.3f} +{c['learner']:>7.3f}" for c in cells)
        print(f"{r['batch']:>6}{text}")


if __name__ == "__main__":
    main()
