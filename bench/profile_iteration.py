"""Where the time of one exp2_honest iteration goes, in-process and over gRPC (SPEC 9).

Two trials of ``experiments/exp2_honest.toml`` run side by side, iterations alternating: agent
a0 in this process (``address = "inprocess"``, the learner's ``TorchNet`` called directly) and
a0 as a local ``casi-learner`` subprocess over loopback gRPC. Each timed iteration is split into
exclusive sections by ``time.perf_counter`` wrappers that this benchmark puts around the
objects the trainer calls (nothing in the library is instrumented, so switched off it costs
nothing):

- ``sim``: ``BatchSim.reset`` and ``step``; ``sampling``: the per-head Gumbel-max sampling;
- ``encode``: the client's codec calls (numpy -> proto for Predict and Train, proto -> numpy
  for Predictions and Params);
- ``forward`` and ``train``: the learner's own compute. In-process they are ``TorchNet.predict``
  and ``TorchNet.train``; over gRPC the same calls are replayed, after the iteration, on a
  ``TorchNet`` in this process loaded with the remote learner's parameters and optimizer state;
- ``RPC predict``, ``RPC train``: the client's round trip minus encode and minus the replayed
  compute: transport, the server's decode, checks, encode and scheduling;
- ``get_params``: the GetParams after every Train (kept so that a dead learner can be given
  back its state), round trip;
- ``bonus``, ``GAE``: exploration bonus and advantages;
- ``eval``: the whole greedy evaluation (every ``eval.every`` = 10 iterations; its share per
  iteration is reported);
- ``other``: the rest (rollout bookkeeping, logging, CSV).

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
    "sim",
    "sampling",
    "encode",
    "forward",
    "RPC predict",
    "bonus",
    "GAE",
    "train",
    "RPC train",
    "get_params",
    "eval",
    "other",
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


class TimedSim:
    """A BatchSim whose reset and step are timed as ``sim``."""

    def __init__(self, sim: Any) -> None:
        self._sim = sim
        self.reset = PROFILER.wrap("sim", sim.reset)
        self.step = PROFILER.wrap("sim", sim.step)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sim, name)


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


def instrument(session: Session) -> TimedNet:
    """Puts the timing wrappers around what ``session``'s trainer calls."""
    tr = session.trainer
    tr.sim, tr.eval_sim = TimedSim(tr.sim), TimedSim(tr.eval_sim)
    tr.evaluate = PROFILER.wrap("eval", tr.evaluate, opaque=True)  # type: ignore[method-assign]
    agent = session.agent
    agent.bonus = PROFILER.wrap("bonus", agent.bonus)
    net = TimedNet(agent.learner.net, remote=session.label == "gRPC")
    agent.learner.net = net
    return net


@contextmanager
def patched_modules() -> Iterator[None]:
    """Times the sampling, GAE and codec functions as the trainer and the client call them."""
    from casi_orchestrator import sampling, trainer
    from casi_proto import codec

    saved: list[tuple[Any, str, Any]] = []

    def patch(module: Any, name: str, section: str) -> None:
        fn = getattr(module, name)
        saved.append((module, name, fn))
        setattr(module, name, PROFILER.wrap(section, fn))

    patch(sampling, "sample_heads", "sampling")
    patch(trainer, "gae", "GAE")
    for name in (
        "observations_to_proto",
        "predictions_from_proto",
        "sequences_to_proto",
        "params_from_proto",
    ):
        patch(codec, name, "encode")
    try:
        yield
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)


def replay(net: TimedNet, params: Any, shadow: Any) -> dict[str, float]:
    """The remote learner's compute, replayed on ``shadow`` loaded with the same state."""
    shadow.set_params(params)
    forward = 0.0
    for obs in net.predicts:
        t0 = time.perf_counter()
        shadow.predict(obs)
        forward += time.perf_counter() - t0
    train = 0.0
    for step, batch in net.trains:
        t0 = time.perf_counter()
        shadow.train(step, batch)
        train += time.perf_counter() - t0
    net.predicts.clear()
    net.trains.clear()
    return {"forward": forward, "train": train}


def profile_iteration(session: Session, net: TimedNet, shadow: Any) -> dict[str, float]:
    """One timed iteration of ``session``: exclusive milliseconds per section."""
    params_before = session.agent.params
    PROFILER.take()
    with PROFILER.section("other"):
        session.step()
    times = PROFILER.take()
    if net.remote:
        compute = replay(net, params_before, shadow)
        times["RPC predict"] = times.get("RPC predict", 0.0) - compute["forward"]
        times["RPC train"] = times.get("RPC train", 0.0) - compute["train"]
        times.update(compute)
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
        sessions = [
            Session("inprocess", Path(tmp) / "inprocess", algorithm=algorithm),
            Session(None, Path(tmp) / "grpc", algorithm=algorithm),
        ]
        shadow = TorchNet("cpu", threads=sessions[1].cfg.learners.threads or None)
        shadow.init(sessions[1].trainer.net_cfg(sessions[1].agent))
        try:
            nets = []
            with patched_modules():
                nets = [instrument(s) for s in sessions]
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
