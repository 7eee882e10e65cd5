"""Starting the local Ray (``ray_learners.start_local``, what ``--ray auto`` and the tests use):
a start whose node missed Ray's 30 s is tried again.

A raylet that misses its 30 s cannot be produced on demand, so the failed starts here are a
stand-in for ``ray.init`` raising Ray's own exception; every start that succeeds is a real one.
"""

from __future__ import annotations

from typing import Any

import pytest

ray = pytest.importorskip("ray")
from casi_orchestrator import ray_learners  # noqa: E402
from casi_orchestrator.learners import LearnerStartError  # noqa: E402

RAY_WORDS = (
    "The current node timed out during startup. This could happen because some of the raylet "
    "failed to startup or the GCS has become overloaded."
)


def _failing_init(monkeypatch: pytest.MonkeyPatch, failures: int, error: Exception) -> list[Any]:
    """Makes the first ``failures`` calls of ``ray.init`` raise ``error``; later calls start a
    real Ray. Returns the list of calls."""
    real_init = ray.init
    calls: list[Any] = []

    def init(**kwargs: Any) -> Any:
        calls.append(kwargs)
        if len(calls) <= failures:
            raise error
        return real_init(**kwargs)

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setenv(ray_learners.CLUSTERS_SWITCH, "0")  # restored after the test
    return calls


@pytest.mark.expensive
def test_a_local_ray_whose_node_timed_out_is_started_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _failing_init(monkeypatch, failures=1, error=Exception(RAY_WORDS))
    try:
        ray_learners.start_local(num_cpus=1)
        assert len(calls) == 2
        assert ray.is_initialized()
        assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    finally:
        ray.shutdown()


def test_a_local_ray_that_never_starts_says_so_and_where_its_logs_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _failing_init(monkeypatch, failures=99, error=Exception(RAY_WORDS))
    with pytest.raises(LearnerStartError, match=r"did not start in 3 tries .*session_latest"):
        ray_learners.start_local(num_cpus=1)
    assert len(calls) == ray_learners.START_TRIES == 3
    assert not ray.is_initialized()


def test_any_other_failure_to_start_is_not_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _failing_init(monkeypatch, failures=99, error=ValueError("num_cpus must be >= 0"))
    with pytest.raises(ValueError, match="num_cpus"):
        ray_learners.start_local(num_cpus=1)
    assert len(calls) == 1
