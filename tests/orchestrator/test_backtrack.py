import math

import numpy as np
import pytest
from casi_orchestrator.backtrack import Backtracker, Decision
from casi_proto.api import Params


def params(k: int) -> Params:
    return Params(
        tensors={
            "trunk.0.weight": np.full((2, 3), k, np.float32),
            "v.bias": np.array([k], np.float32),
        },
        optimizer={
            "state/0/exp_avg": np.full(3, -k, np.float32),
            "param_groups/0/lr": np.array([0.1]),
        },
        version=k,
    )


class Learner:
    """Stands in for the learner's params: evaluation k has params(k)."""

    def __init__(self) -> None:
        self.k = 0
        self.calls = 0

    def current(self) -> Params:
        self.calls += 1
        return params(self.k)


def drive(bt: Backtracker, metrics: list[float]) -> list[tuple[str, int | None]]:
    learner = Learner()
    events = []
    for k, metric in enumerate(metrics, start=1):
        learner.k = k
        d = bt.observe(metric, learner.current)
        events.append((d.kind, None if d.restore is None else d.restore.version))
    assert learner.calls == sum(kind == "push" for kind, _ in events)
    return events


def test_three_levels_by_hand():
    bt = Backtracker(pop_limit=1, restart_limit=1, unimproved_limit=1, initial=params(0))
    metrics = [0.5, 0.4, 0.5, 0.3, 0.3, 0.6, 0.1, 0.1, 0.1, 0.1, 0.9]
    assert drive(bt, metrics) == [
        ("push", None),  # 1: best -inf -> 0.5, stack [0, 1]
        ("wait", None),  # 2: unimproved 1
        ("restart", 1),  # 3: equal is not better; unimproved 2 > 1 -> restarts 1
        ("wait", None),  # 4
        ("pop", 0),  # 5: restarts 2 > 1 -> pops 1, stack [0]
        ("push", None),  # 6: 0.6 > 0.5, stack [0, 6]
        ("wait", None),  # 7
        ("restart", 6),  # 8
        ("wait", None),  # 9
        ("stop", 6),  # 10: pops 2 > 1
        ("stop", 6),  # 11: stopped for good, even on a better metric
    ]
    assert bt.stopped and bt.best == 0.6
    assert [s.version for s in bt.snapshots] == [0, 6]
    assert (bt.pops, bt.restarts, bt.unimproved) == (2, 2, 0)


def test_counters_after_each_step():
    bt = Backtracker(pop_limit=5, restart_limit=1, unimproved_limit=2, initial=params(0))
    seen = []
    learner = Learner()
    for metric in [1.0, 0.0, 0.0, 0.0, 2.0]:
        bt.observe(metric, learner.current)
        seen.append((bt.pops, bt.restarts, bt.unimproved, len(bt.snapshots)))
    assert seen == [(0, 0, 0, 2), (0, 0, 1, 2), (0, 0, 2, 2), (0, 1, 0, 2), (0, 0, 0, 3)]


def test_the_last_snapshot_is_never_popped():
    bt = Backtracker(pop_limit=2, restart_limit=0, unimproved_limit=0, initial=params(0))
    assert drive(bt, [0.0, 0.0, 0.0, 0.0]) == [
        ("push", None),
        ("pop", 0),  # stack [0, 1] -> [0]
        ("pop", 0),  # only the initial snapshot left: counted, nothing popped
        ("stop", 0),
    ]
    assert len(bt.snapshots) == 1 and bt.pops == 3


def test_nan_never_improves_and_first_finite_metric_pushes():
    bt = Backtracker(pop_limit=0, restart_limit=0, unimproved_limit=3, initial=params(0))
    assert drive(bt, [math.nan, -1e9]) == [("wait", None), ("push", None)]
    assert bt.best == -1e9


def test_restore_is_the_stored_snapshot_with_the_pushed_values():
    init = params(0)
    bt = Backtracker(pop_limit=3, restart_limit=0, unimproved_limit=0, initial=init)
    live = params(7)
    d = bt.observe(0.5, lambda: live)
    assert d == Decision("push", None)
    live.tensors["trunk.0.weight"][:] = 99.0  # the learner keeps training in place
    d = bt.observe(0.1, lambda: params(8))
    assert d.kind == "pop"
    assert d.restore is bt.snapshots[-1] and d.restore.version == 0
    d2 = bt.observe(0.1, lambda: params(9))
    assert d2.restore is d.restore
    np.testing.assert_array_equal(d.restore.tensors["trunk.0.weight"], np.zeros((2, 3)))
    init.tensors["trunk.0.weight"][:] = 5.0
    assert d.restore.tensors["trunk.0.weight"].max() == 0.0

    bt = Backtracker(pop_limit=3, restart_limit=1, unimproved_limit=0, initial=init)
    bt.observe(0.5, lambda: live)
    live.tensors["trunk.0.weight"][:] = -1.0
    d = bt.observe(0.1, lambda: params(8))
    assert d.kind == "restart" and d.restore is bt.snapshots[1]
    assert d.restore.version == 7
    np.testing.assert_array_equal(d.restore.tensors["trunk.0.weight"], np.full((2, 3), 99.0))
    np.testing.assert_array_equal(d.restore.optimizer["state/0/exp_avg"], np.full(3, -7.0))


def test_state_round_trip_continues_identically():
    metrics = [0.5, 0.6, 0.2, 0.2, 0.2, 0.7] + [0.1] * 12
    limits = dict(pop_limit=2, restart_limit=1, unimproved_limit=1)
    whole = Backtracker(**limits, initial=params(0))
    events_whole = drive(whole, metrics)

    first = Backtracker(**limits, initial=params(0))
    events = drive(first, metrics[:7])
    arrays = {"other/thing": np.zeros(1), **first.state("agent/a0/backtrack/")}
    assert arrays["agent/a0/backtrack/counters"].tolist() == [
        first.pops,
        first.restarts,
        first.unimproved,
        len(first.snapshots),
    ]
    assert "agent/a0/backtrack/snap2/tensors/trunk.0.weight" in arrays
    assert "agent/a0/backtrack/snap2/optimizer/state/0/exp_avg" in arrays
    resumed = Backtracker.from_state(arrays, "agent/a0/backtrack/", **limits)
    assert (resumed.best, resumed.pops, resumed.restarts, resumed.unimproved) == (
        first.best,
        first.pops,
        first.restarts,
        first.unimproved,
    )
    for a, b in zip(resumed.snapshots, first.snapshots, strict=True):
        assert a.version == b.version and a.tensors.keys() == b.tensors.keys()
        assert a.optimizer.keys() == b.optimizer.keys()
        for name in a.tensors:
            np.testing.assert_array_equal(a.tensors[name], b.tensors[name])
    # continue with the evaluations' own numbering
    learner = Learner()
    for k, metric in enumerate(metrics[7:], start=8):
        learner.k = k
        d = resumed.observe(metric, learner.current)
        events.append((d.kind, None if d.restore is None else d.restore.version))
    assert events == events_whole
    assert [kind for kind, _ in events].count("pop") == 2 and events[-1] == ("stop", 1)


def test_from_state_with_a_missing_snapshot_names_it():
    bt = Backtracker(pop_limit=1, restart_limit=1, unimproved_limit=1, initial=params(0))
    arrays = bt.state("bt/")
    del arrays["bt/snap0/version"]
    with pytest.raises(ValueError, match="under 'bt/' is incomplete.*snap0/version"):
        Backtracker.from_state(arrays, "bt/", 1, 1, 1)


def test_negative_limits_are_refused():
    with pytest.raises(ValueError, match="restart_limit must be >= 0, got -1"):
        Backtracker(pop_limit=1, restart_limit=-1, unimproved_limit=1, initial=params(0))
