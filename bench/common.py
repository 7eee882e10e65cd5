"""What the orchestrator benchmarks share: the machine, the exp2_honest trainer, medians, JSON.

Not a benchmark itself (``make bench`` runs ``sim.py``, ``link.py``, ``profile_iteration.py``,
``start.py`` and ``learn.py``).

Results go to ``bench/results/<name>.json``; the environment variable ``CASI_BENCH_RESULTS``
names another folder (the smoke test in ``tests/bench`` uses a temporary one).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("CASI_BENCH_RESULTS") or ROOT / "bench" / "results")
EXP2 = ROOT / "experiments" / "exp2_honest.toml"
CASI = [sys.executable, "-m", "casi_orchestrator"]


def machine() -> dict[str, Any]:
    """CPU model, cores, load average and library versions."""
    cpu = ""
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("grpc", "numba", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = str(getattr(module, "__version__", "?"))
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": os.getloadavg(), **versions}


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def _json_safe(x: Any) -> Any:
    """NaN and infinities (e.g. the median of seeds that never reached a target) become null:
    strict JSON has no such numbers."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def write_results(name: str, report: dict[str, Any]) -> Path:
    """Writes ``RESULTS/<name>.json`` (machine description added) and returns its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    text = json.dumps(_json_safe({"machine": machine(), **report}), indent=2, allow_nan=False)
    path.write_text(text + "\n")
    print(f"wrote {path}")
    return path


def exp2_config(address: str | None, **sections: dict[str, Any]) -> Any:
    """exp2_honest as ``casi run`` loads it, with agent a0 at ``address`` (None: subprocess).

    ``sections`` update single keys, e.g. ``learners={"threads": 2}``; None values are skipped.
    """
    from casi_orchestrator.config import load_config

    overrides = {"a0": address} if address else None
    cfg = load_config(EXP2, overrides=overrides)
    for name, keys in sections.items():
        keys = {k: v for k, v in keys.items() if v is not None}
        if keys:
            cfg = cfg.model_copy(update={name: getattr(cfg, name).model_copy(update=keys)})
    return cfg


class Session:
    """One exp2_honest trial, started and ready for ``step``: learner, output folder, trainer.

    ``trainer_class`` (a Trainer subclass) and ``wrap_net`` (a function of the learner's Net
    returning another Net) let a benchmark look inside an iteration through the trainer's
    phase methods and the Net protocol.
    """

    def __init__(
        self,
        address: str | None,
        folder: Path,
        trainer_class: Any = None,
        wrap_net: Any = None,
        **sections: dict[str, Any],
    ) -> None:
        from casi_orchestrator.learners import LearnerPool
        from casi_orchestrator.outputs import TrialOutput
        from casi_orchestrator.trainer import Trainer

        self.cfg = exp2_config(address, **sections)
        self.label = "in-process" if address == "inprocess" else "gRPC"
        self.pool = LearnerPool(self.cfg.learners, folder)
        names = [spec.name for _, spec in self.cfg.learning_agents]
        for _, spec in self.cfg.learning_agents:
            learner = self.pool.open(spec.name, spec.address)
            if wrap_net is not None:
                learner.net = wrap_net(learner.net)
        out = TrialOutput(folder / "trial-0", names, self.cfg.log.iteration_csv)
        self.trainer = (trainer_class or Trainer)(self.cfg, 0, self.pool, out)
        self.trainer.start(resume=False)

    @property
    def member(self) -> Any:
        """The learning agent a0 (its learner, its last parameters)."""
        return self.trainer.fleet.members[0]

    def step(self) -> tuple[float, int]:
        """One iteration (with its evaluation when due): (seconds, agent-steps)."""
        before = self.trainer.state.agent_steps
        t0 = time.perf_counter()
        self.trainer.run_iteration(self.trainer.iteration + 1)
        seconds = time.perf_counter() - t0
        return seconds, self.trainer.state.agent_steps - before

    def close(self) -> None:
        self.trainer.out.close()
        self.trainer.close()
        self.pool.close()


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident set size (``VmHWM``) of a process in MB, None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out
