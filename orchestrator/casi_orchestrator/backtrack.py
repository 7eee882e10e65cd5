"""Three-level backtracking over parameter snapshots (SPEC section 5, item 6).

At every evaluation, for one learning agent::

    if metric > best: push a snapshot of the current params; restarts = unimproved = 0
    else:
      unimproved += 1
      if unimproved > unimproved_limit:
        restarts += 1; unimproved = 0
        if restarts > restart_limit:
          pops += 1
          if pops > pop_limit: stop early
          else: pop a snapshot (never the last one); restarts = 0
        restore the top snapshot (the caller: SetParams + ResetOptimizer)

Decisions where the pseudocode is silent:

- ``best`` starts at ``-inf``, so the first evaluation always pushes; a NaN
  metric never improves.
- ``best`` is the best metric ever seen; a pop does not lower it. ``pops`` is
  never reset (a push resets only ``restarts`` and ``unimproved``).
- A pop with a single snapshot left pops nothing but still counts (and is
  reported) as a pop, and the top snapshot is restored.
- ``stop`` also carries the top snapshot, so the run can end on the best params;
  once stopped, every later evaluation answers ``stop`` and changes nothing.
- A pushed snapshot is a copy of what ``current()`` returned: later in-place
  changes to the learner's arrays cannot reach it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np
from casi_proto.api import Params

from casi_orchestrator.checkpoint import params_arrays, read_params

EventKind = Literal["push", "wait", "restart", "pop", "stop"]


class Decision(NamedTuple):
    """What to do after an evaluation; ``restore`` is set for restart, pop and stop."""

    kind: EventKind
    restore: Params | None = None


class Backtracker:
    """The snapshot stack and counters of one learning agent."""

    def __init__(
        self, pop_limit: int, restart_limit: int, unimproved_limit: int, initial: Params
    ) -> None:
        for name, value in (
            ("pop_limit", pop_limit),
            ("restart_limit", restart_limit),
            ("unimproved_limit", unimproved_limit),
        ):
            if value < 0:
                raise ValueError(f"backtracking {name} must be >= 0, got {value}")
        self.pop_limit, self.restart_limit = pop_limit, restart_limit
        self.unimproved_limit = unimproved_limit
        self.best = -math.inf
        self.snapshots: list[Params] = [_copy(initial)]
        self.pops = self.restarts = self.unimproved = 0

    @property
    def stopped(self) -> bool:
        return self.pops > self.pop_limit

    def observe(self, metric: float, current: Callable[[], Params]) -> Decision:
        """Take one evaluation's metric; ``current`` is called only to push a snapshot."""
        if self.stopped:
            return Decision("stop", self.snapshots[-1])
        if metric > self.best:
            self.best = float(metric)
            self.snapshots.append(_copy(current()))
            self.restarts = self.unimproved = 0
            return Decision("push")
        self.unimproved += 1
        if self.unimproved <= self.unimproved_limit:
            return Decision("wait")
        self.restarts += 1
        self.unimproved = 0
        kind: EventKind = "restart"
        if self.restarts > self.restart_limit:
            self.pops += 1
            if self.stopped:
                kind = "stop"
            else:
                kind = "pop"
                if len(self.snapshots) > 1:
                    self.snapshots.pop()
                self.restarts = 0
        return Decision(kind, self.snapshots[-1])

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        """The stack and counters as arrays, every key starting with ``prefix``.

        Keys: ``counters`` int64 [pops, restarts, unimproved, n_snapshots]; ``best`` float64
        [1]; snapshot ``i`` (0 = bottom) under ``snap<i>/`` as
        :func:`casi_orchestrator.checkpoint.params_arrays` names a learner's state.
        """
        out = {
            f"{prefix}counters": np.array(
                [self.pops, self.restarts, self.unimproved, len(self.snapshots)], np.int64
            ),
            f"{prefix}best": np.array([self.best], np.float64),
        }
        for i, snap in enumerate(self.snapshots):
            out.update(params_arrays(snap, f"{prefix}snap{i}/"))
        return out

    @classmethod
    def from_state(
        cls,
        arrays: dict[str, np.ndarray],
        prefix: str,
        pop_limit: int,
        restart_limit: int,
        unimproved_limit: int,
    ) -> Backtracker:
        """Rebuild from :meth:`state`; ``arrays`` may hold other keys too."""
        try:
            pops, restarts, unimproved, n_snapshots = (int(x) for x in arrays[f"{prefix}counters"])
            best = float(arrays[f"{prefix}best"][0])
            snapshots = [read_params(arrays, f"{prefix}snap{i}/") for i in range(n_snapshots)]
        except (KeyError, ValueError, IndexError) as e:
            raise ValueError(f"backtracking state under {prefix!r} is incomplete: {e}") from e
        if n_snapshots < 1:
            raise ValueError(
                f"backtracking state under {prefix!r}: {n_snapshots} snapshots, expected >= 1"
            )
        bt = cls(pop_limit, restart_limit, unimproved_limit, snapshots[0])
        bt.snapshots, bt.best = snapshots, best
        bt.pops, bt.restarts, bt.unimproved = pops, restarts, unimproved
        return bt


def _copy(params: Params) -> Params:
    return Params(
        tensors={k: np.array(v, copy=True) for k, v in params.tensors.items()},
        optimizer={k: np.array(v, copy=True) for k, v in params.optimizer.items()},
        version=int(params.version),
    )
