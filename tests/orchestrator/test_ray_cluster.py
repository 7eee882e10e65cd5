"""A two-node Ray cluster on this machine (both nodes on 127.0.0.1): a learner placed on the
second node by a custom resource, killed there mid-run, comes back there, and the run's
numbers are those of a run on a local learner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from casi_orchestrator.runner import run_experiment

from .test_ray import KillOnce, config, events, quiet, rows

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.expensive


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Any]:
    """A head node with 1 CPU and a second node with 1 CPU and the resource ``gpu_host``."""
    from casi_orchestrator import ray_learners
    from ray.cluster_utils import Cluster

    ray_learners.loopback_only()
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    second = cluster.add_node(num_cpus=1, resources={"gpu_host": 1})
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    yield second
    ray.shutdown()
    cluster.shutdown()


def test_a_learner_on_the_second_node_killed_there_comes_back_there(
    tmp_path: Path, two_nodes: Any
) -> None:
    assert {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} == {"127.0.0.1"}
    local = tmp_path / "local"
    local.mkdir()
    assert run_experiment(config(local), local / "runs", 1, False, console=quiet()) == 0
    learners = 'placement = "ray"\nnum_cpus = 1\nresources = { gpu_host = 1 }\nmax_restarts = 1'
    cfg = config(tmp_path, learners)
    root = tmp_path / "runs"
    kill = KillOnce(root / "tiny" / "trial-0" / "iterations.csv", after=2)
    assert run_experiment(cfg, root, 1, False, kill, console=quiet()) == 0
    assert kill.nodes == [two_nodes.node_id] * 2, "not placed (again) on the second node"
    assert rows(root, 0) == rows(local / "runs", 0)
    back = [e for e in events(root, 0) if e.get("event") == "learner_restarted"]
    assert len(back) == 1, back
