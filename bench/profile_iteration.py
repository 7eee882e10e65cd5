"""Where the time of one exp2_honest iteration goes, in-process and over gRPC (SPEC 9).

Two trials of ``experiments/exp2_honest.toml`` run side by side, iterations alternating: agent
a0 in this process (``address = "inprocess"``, the learner's ``TorchNet`` called directly) and
a0 as a local ``casi-learner`` subprocess over loopback gRPC. Each timed iteration is the
trainer's own ``run_iteration``, split into exclusive sections at the module boundaries the
loop calls: a :class:`Trainer` subclass times its phase methods (``rollout``, ``update``,
``evaluate``), and a Net wrapper, given to the trainer in place of the learner's Net, times
each call of the contract. Nothing in the library is patched or instrumented.

- ``rollout other``: the rollout minus its Predict calls (simulator, sampling, bookkeeping);
- ``predict``: Predict calls, in-process the learner's forward pass; over gRPC split into
  ``encode`` (the client's codec on the same arrays, replayed after the iteration),
  ``forward`` (the same Predicts replayed on a ``TorchNet`` in this process loaded with the
  remote learner's state) and ``RPC predict`` (the rest: transport, the server's decode,
  checks, encode and scheduling);
- ``bonus + GAE``: the update phase minus its Train and GetParams calls;
- ``train``, ``RPC train``: Train, split over gRPC like Predict (``encode`` includes it);
- ``get_params``: the GetParams after every Train (kept so that a dead learner can be given
  back its state), round trip;
- ``eval``: the whole greedy evaluation (every ``eval.every`` = 10 iterations; its share per
  iteration is reported);
- ``logs + other``: the rest of the iteration (log streams, the CSV row).

Prints a table (milliseconds per iteration, medians) and writes ``bench/results/profile.json``
(``profile-B<batch>.json`` with ``--batch``).
Run: ``.venv/bin/python bench/profile_iteration.py [--iterations N] [--warmup N] [--batch B]`` (not
``profile.py``: a script of that name would hide the standard library's ``profile`` module,
which torch imports).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from common import Session, median, write_results

SECTIONS = (
    "rollout other",
    "encode",
    "forward",
    "RPC predict",
    "bonus + GAE",
    "train",
    "RPC train",
    "get_params",
    "eval",
    "logs + other",
)


class Profiler:
    """Exclusive times of nested sections; inside an opaque section nothing else is recorded."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self._stack: list[list[Any]] = []  # [name, start, child time, opaque]

    @contextmanager
    def section(self, name: str, opaque: bool = False) -> Iterator[None]:
        if self._stack and self._stack[-1][3]:
            yield
            return
        frame = [name, time.perf_counter(), 0.0, opaque]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            elapsed = time.perf_counter() - frame[1]
            self.totals[name] += elapsed - frame[2]
            if self._stack:
                self._stack[-1][2] += elapsed

    def wrap(self, name: str, fn: Callable[..., Any], opaque: bool = False) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.section(name, opaque):
                return fn(*args, **kwargs)

        return timed

    def take(self) -> dict[str, float]:
        out = dict(self.totals)
        self.totals.clear()
        return out


PROFILER = Profiler()


class TimedNet:
    """A Net whose calls are timed; over gRPC it records Predict and Train inputs for replay."""

    def __init__(self, net: Any, remote: bool) -> None:
        self._net, self.remote = net, remote
        self.predicts: list[np.ndarray] = []
        self.trains: list[tuple[int, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._net, name)

    def predict(self, obs: np.ndarray) -> Any:
        if not self.remote:
            with PROFILER.section("forward"):
                return self._net.predict(obs)
        if not PROFILER._stack or not PROFILER._stack[-1][3]:
            self.predicts.append(np.array(obs))
        with PROFILER.section("RPC predict"):
            return self._net.predict(obs)

    def train(self, step: int, batch: Any) -> Any:
        if not self.remote:
            with PROFILER.section("train"):
                return self._net.train(step, batch)
        self.trains.append((step, batch))
        with PROFILER.section("RPC train"):
            return self._net.train(step, batch)

    def get_params(self) -> Any:
        with PROFILER.section("get_params"):
            return self._net.get_params()


def timed_trainer() -> type:
    """A Trainer whose phase methods are timed as sections."""
    from casi_orchestrator.trainer import Trainer

    class TimedTrainer(Trainer):
        def rollout(self, it: int) -> Any:
            with PROFILER.section("rollout other"):
                return super().rollout(it)

        def update(self, it: int, roll: Any) -> Any:
            with PROFILER.section("bonus + GAE"):
                return super().update(it, roll)

        def evaluate(self, it: int) -> Any:
            with PROFILER.section("eval", opaque=True):
                return super().evaluate(it)

    return TimedTrainer


def replay(net: TimedNet, params: Any, shadow: Any) -> dict[str, float]:
    """The remote learner's compute, replayed on ``shadow`` loaded with the same state, and
    the client's encoding of the same requests."""
    from casi_proto import codec

    shadow.set_params(params)
    times = {"forward": 0.0, "train": 0.0, "encode_predict": 0.0, "encode_train": 0.0}

    def timed(name: str, fn: Callable[..., Any], *args: Any) -> None:
        t0 = time.perf_counter()
        fn(*args)
        times[name] += time.perf_counter() - t0

    for obs in net.predicts:
        timed("encode_predict", codec.observations_to_proto, obs)
        timed("forward", shadow.predict, obs)
    for step, batch in net.trains:
        timed("encode_train", codec.sequences_to_proto, step, batch)
        timed("train", shadow.train, step, batch)
    net.predicts.clear()
    net.trains.clear()
    return times


def profile_iteration(session: Session, net: TimedNet, shadow: Any) -> dict[str, float]:
    """One timed iteration of ``session``: exclusive milliseconds per section."""
    params_before = session.member.params
    PROFILER.take()
    with PROFILER.section("logs + other"):
        session.step()
    times = PROFILER.take()
    if net.remote:
        spent = replay(net, params_before, shadow)
        rpc_predict, rpc_train = times.get("RPC predict", 0.0), times.get("RPC train", 0.0)
        times["RPC predict"] = rpc_predict - spent["forward"] - spent["encode_predict"]
        times["RPC train"] = rpc_train - spent["train"] - spent["encode_train"]
        times["encode"] = spent["encode_predict"] + spent["encode_train"]
        times["forward"], times["train"] = spent["forward"], spent["train"]
    times["total"] = sum(times.values())
    return {k: 1000 * v for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40, help="timed iterations per side")
    parser.add_argument("--warmup", type=int, default=10, help="untimed iterations per side")
    parser.add_argument("--batch", type=int, default=None, help="episodes (default: config, 256)")
    args = parser.parse_args()
    algorithm = {"batch": args.batch}
    from casi_learner.torch_net import TorchNet

    with tempfile.TemporaryDirectory() as tmp:
        nets: list[TimedNet] = []

        def wrap(remote: bool) -> Callable[[Any], TimedNet]:
            def make(net: Any) -> TimedNet:
                nets.append(TimedNet(net, remote))
                return nets[-1]

            return make

        trainer = timed_trainer()
        sessions = [
            Session(
                "inprocess", Path(tmp) / "inprocess", trainer, wrap(False), algorithm=algorithm
            ),
            Session(None, Path(tmp) / "grpc", trainer, wrap(True), algorithm=algorithm),
        ]
        shadow = TorchNet("cpu", threads=sessions[1].cfg.learners.threads or None)
        shadow.init(sessions[1].trainer.net_cfg(sessions[1].member))
        try:
            for _ in range(args.warmup):
                for s in sessions:
                    s.step()
            for net in nets:
                net.predicts.clear()
                net.trains.clear()
            rows: dict[str, list[dict[str, float]]] = {s.label: [] for s in sessions}
            for _ in range(args.iterations):
                for s, net in zip(sessions, nets, strict=True):
                    rows[s.label].append(profile_iteration(s, net, shadow))
        finally:
            for s in sessions:
                s.close()
    every, batch = sessions[0].cfg.eval.every, sessions[0].cfg.algorithm.batch
    table = summarise(rows, every)
    print_table(table, every, args.iterations, batch)
    write_results(
        "profile" if args.batch is None else f"profile-B{batch}",
        {
            "unit": "milliseconds per iteration (median; eval: median of the evaluating "
            f"iterations / {every})",
            "iterations": args.iterations,
            "batch": batch,
            "sections": table,
            "raw": rows,
        },
    )


def summarise(rows: dict[str, list[dict[str, float]]], every: int) -> dict[str, dict[str, float]]:
    """Per section and side: the median over iterations (eval amortised over ``every``)."""
    table: dict[str, dict[str, float]] = {}
    for name in (*SECTIONS, "total"):
        table[name] = {}
        for label, its in rows.items():
            if name == "eval":
                evals = [r["eval"] for r in its if r.get("eval")]
                table[name][label] = median(evals) / every if evals else 0.0
            else:
                table[name][label] = median([r.get(name, 0.0) for r in its])
    for label in rows:  # a typical iteration: the median training iteration plus eval's share
        train_only = [r["total"] - r.get("eval", 0.0) for r in rows[label]]
        table["total"][label] = median(train_only) + table["eval"][label]
    return table


def print_table(table: dict[str, dict[str, float]], every: int, n: int, batch: int) -> None:
    labels = list(next(iter(table.values())))
    print(f"exp2_honest, one iteration (B = {batch}, T = 10), ms, median of {n} per side")
    print(f"{'section':<12}" + "".join(f"{label:>12}" for label in labels) + f"{'share':>8}")
    for name, values in table.items():
        share = values[labels[-1]] / table["total"][labels[-1]] if name != "total" else 1.0
        cells = "".join(f"{values[label]:>12.2f}" for label in labels)
        print(f"{name:<12}{cells}{share:>8.0%}")
    print(f"(eval: one evaluation every {every} iterations, shown per iteration; share: gRPC)")


if __name__ == "__main__":
    main()
