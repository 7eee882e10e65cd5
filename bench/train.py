"""Train calls on exp2_honest's batches: this tree's learner against an older revision's.

The batches are real: ``--capture`` iterations of exp2_honest with a0 in this process
(``address = "inprocess"``) record every Train request (256 episodes x 10 steps). Two worker
processes then hold one ``TorchNet`` each, initialised with the same NetCfg: ``base``, the
learner package of ``--base`` (a git revision, unpacked with ``git archive`` and put first on
the worker's ``PYTHONPATH``), and ``head``, this tree's learner (or ``--head REV``). They take
turns, a block of ``--block`` Train calls each (the side that goes first alternates), both
calling Train with the same steps on the same batches, so that after every block they should
hold the same state: the benchmark compares their parameters, optimizer state and reported
losses at the end, bit for bit, and reports the largest difference.

Reported: median milliseconds per Train call per side (over all timed calls), wall and CPU
time of the calling thread (with one torch thread all of Train's work; far less sensitive to
other load on the machine than wall time), head / base for each (the median of the per-round
ratios of block medians), and whether the two ended identical.

Prints a table and writes ``bench/results/train.json``.
Run: ``.venv/bin/python bench/train.py [--base REV] [--head REV] [--rounds R] [--block K]
[--capture N] [--threads N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import ROOT, Session, median, write_results

BASE = "79bea64"  # the learner before the Train speed changes (docs/performance.md)


def capture(iterations: int, folder: Path) -> dict[str, Any]:
    """The NetCfg of a0 and the Train requests of ``iterations`` exp2_honest iterations."""
    requests: list[tuple[int, Any]] = []

    class Recorder:
        def __init__(self, net: Any) -> None:
            self._net = net

        def __getattr__(self, name: str) -> Any:
            return getattr(self._net, name)

        def train(self, step: int, batch: Any) -> Any:
            requests.append((step, batch))
            return self._net.train(step, batch)

    session = Session("inprocess", folder, None, Recorder)
    try:
        cfg = session.trainer.net_cfg(session.member)
        for _ in range(iterations):
            session.step()
    finally:
        session.close()
    return {"cfg": cfg.SerializeToString(), "batches": [batch for _, batch in requests]}


def unpack(rev: str, folder: Path) -> Path:
    """The learner package of git revision ``rev`` in ``folder``: its import path."""
    folder.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "learner"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "learner"


def save_batches(path: Path, captured: dict[str, Any]) -> None:
    """The NetCfg and the Train batches in one .npz file (no pickles)."""
    batches = captured["batches"]
    arrays = {"cfg": np.frombuffer(captured["cfg"], np.uint8), "count": np.array(len(batches))}
    for i, batch in enumerate(batches):
        arrays |= {f"{i}|{k}": v for k, v in batch._asdict().items() if v is not None}
    np.savez(path, **arrays)


def load_batches(path: Path) -> tuple[bytes, list[Any]]:
    from casi_proto.api import Sequences

    with np.load(path, allow_pickle=False) as z:
        batches = [
            Sequences(**{k: z[f"{i}|{k}"] for k in Sequences._fields if f"{i}|{k}" in z.files})
            for i in range(int(z["count"]))
        ]
        return z["cfg"].tobytes(), batches


def load_state(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A worker's parameters and optimizer state, as written by its ``state`` request."""
    with np.load(path, allow_pickle=False) as z:
        parts: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] = ({}, {})
        for name in z.files:
            part, key = name.split("|", 1)
            parts[part == "o"][key] = z[name]
        return parts


class Worker:
    """A process holding one TorchNet; requests and answers are JSON lines over its pipes,
    arrays go through .npz files."""

    def __init__(self, label: str, learner_path: Path | None, threads: int) -> None:
        self.label = label
        env = dict(os.environ)
        if learner_path is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                [str(learner_path), *filter(None, [env.get("PYTHONPATH")])]
            )
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.module = self.call("where")

    def call(self, *request: Any) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()
        status, value = json.loads(self.process.stdout.readline())
        if status == "error":
            raise SystemExit(f"{self.label} worker failed:\n{value}")
        return value

    def close(self) -> None:
        if self.process.poll() is None:
            self.call("close")
        self.process.wait(60)


def serve(threads: int) -> None:
    """The worker's loop: ``where``, ``init``, ``train``, ``state``, ``close``."""
    import traceback

    import casi_learner.torch_net as torch_net
    from casi.v1 import net_pb2

    net = torch_net.TorchNet("cpu", threads=threads)
    batches: list[Any] = []
    losses: list[dict[str, float]] = []
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        request = json.loads(inp.readline())
        try:
            value: Any = None
            if request[0] == "where":
                value = torch_net.__file__
            elif request[0] == "init":
                cfg_bytes, batches = load_batches(Path(request[1]))
                cfg = net_pb2.NetCfg()
                cfg.ParseFromString(cfg_bytes)
                net.init(cfg)
            elif request[0] == "train":  # steps first..first+n-1, batches in rotation
                first, n = request[1], request[2]
                value = []
                for step in range(first, first + n):
                    batch = batches[(step - 1) % len(batches)]
                    t0, c0 = time.perf_counter(), time.thread_time()
                    losses.append(net.train(step, batch))
                    value.append((time.perf_counter() - t0, time.thread_time() - c0))
            elif request[0] == "state":  # the arrays to the file named, the rest in the answer
                params = net.get_params()
                arrays = {f"t|{k}": v for k, v in params.tensors.items()}
                np.savez(request[1], **arrays, **{f"o|{k}": v for k, v in params.optimizer.items()})
                value = (params.version, losses)
            answer: tuple[str, Any] = ("ok", value)
        except Exception:
            answer = ("error", traceback.format_exc())
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()
        if request[0] == "close":
            return


def difference(a: Any, b: Any) -> dict[str, Any]:
    """Whether two workers' states are bit-identical, and their largest difference."""
    largest, same = 0.0, True
    for part in range(2):
        if a[part].keys() != b[part].keys():
            return {"identical": False, "max_abs_diff": float("inf"), "note": "other keys"}
        for key in a[part]:
            x, y = a[part][key], b[part][key]
            same = same and x.tobytes() == y.tobytes()
            largest = max(largest, float(np.max(np.abs(x.astype(np.float64) - y), initial=0)))
    losses = a[3] == b[3]
    loss_diff = max(
        (abs(x[k] - y[k]) for x, y in zip(a[3], b[3], strict=True) for k in x), default=0.0
    )
    return {
        "identical": same and losses and a[2] == b[2],
        "params_identical": same,
        "losses_identical": losses,
        "max_abs_diff": largest,
        "max_loss_diff": loss_diff,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=BASE, help=f"git revision to compare with ({BASE})")
    parser.add_argument("--head", default=None, help="git revision (default: this tree)")
    parser.add_argument("--rounds", type=int, default=8, help="blocks per side")
    parser.add_argument("--block", type=int, default=10, help="Train calls per block")
    parser.add_argument("--warmup", type=int, default=3, help="untimed Train calls per side")
    parser.add_argument("--capture", type=int, default=8, help="exp2_honest iterations recorded")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each worker")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        serve(args.worker)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "batches.npz"
        captured = capture(args.capture, Path(tmp) / "capture")
        save_batches(data, captured)
        head = None if args.head is None else unpack(args.head, Path(tmp) / "head")
        sides = [
            Worker("base", unpack(args.base, Path(tmp) / "base"), args.threads),
            Worker("head", head, args.threads),
        ]
        try:
            report = run(sides, data, args, Path(tmp))
        finally:
            for w in sides:
                w.close()
    b0 = captured["batches"][0]
    shape = f"B = {b0.obs.shape[0]}, T = {b0.obs.shape[1]}, {len(captured['batches'])} batches"
    print_report(report, args, shape)
    write_results(
        "train",
        {
            "unit": "milliseconds per Train call (median)",
            "base": args.base,
            "head": args.head or "working tree",
            "batches": shape,
            "rounds": args.rounds,
            "block": args.block,
            "threads": args.threads,
            **report,
        },
    )


def run(sides: list[Worker], data: Path, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    for w in sides:
        w.call("init", str(data))
        w.call("train", 1, args.warmup)
    step = args.warmup + 1
    times: dict[str, list[tuple[float, float]]] = {w.label: [] for w in sides}
    ratios: dict[str, list[float]] = {"wall": [], "cpu": []}
    for r in range(args.rounds):
        block = {}
        for w in sides if r % 2 == 0 else sides[::-1]:
            block[w.label] = w.call("train", step, args.block)
            times[w.label] += block[w.label]
        for i, kind in enumerate(ratios):
            head, base = ([t[i] for t in block[s]] for s in ("head", "base"))
            ratios[kind].append(median(head) / median(base))
        step += args.block
    states = []
    for w in sides:
        path = tmp / f"state-{w.label}.npz"
        version, losses = w.call("state", str(path))
        states.append((*load_state(path), version, losses))
    return {
        "modules": {w.label: w.module for w in sides},
        "ms": {label: 1000 * median([t[0] for t in ts]) for label, ts in times.items()},
        "cpu_ms": {label: 1000 * median([t[1] for t in ts]) for label, ts in times.items()},
        "head_over_base": {kind: median(rs) for kind, rs in ratios.items()},
        "round_ratios": ratios,
        "train_calls": step - 1,
        "same_state": difference(states[0], states[1]),
    }


def print_report(report: dict[str, Any], args: argparse.Namespace, shape: str) -> None:
    print(f"exp2_honest Train calls ({shape}), {args.threads} torch thread(s)")
    print(f"{args.rounds} alternating blocks of {args.block} calls per side")
    print(f"{'side':<6}{'wall ms':>9}{'CPU ms':>9}   learner")
    for label, ms in report["ms"].items():
        cpu = report["cpu_ms"][label]
        print(f"{label:<6}{ms:>9.2f}{cpu:>9.2f}   {report['modules'][label]}")
    for kind, rs in report["round_ratios"].items():
        ratio = report["head_over_base"][kind]
        print(f"head / base, {kind}: {ratio:.3f} (rounds {min(rs):.3f} ... {max(rs):.3f})")
    same = report["same_state"]
    verdict = "bit-identical" if same["identical"] else f"differ by {same['max_abs_diff']:.3g}"
    print(f"after {report['train_calls']} Train calls: {verdict} (parameters, optimizer, losses)")


if __name__ == "__main__":
    main()
