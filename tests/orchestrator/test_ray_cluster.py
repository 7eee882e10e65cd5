"""A two-node Ray cluster on this machine (both nodes on 127.0.0.1): a learner placed on the
second node by a custom resource, killed there mid-run, comes back there, and the run's
numbers are those of a run on a local learner."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from casi_orchestrator.runner import run_experiment
from rich.console import Console

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
    yield cluster, second
    ray.shutdown()
    cluster.shutdown()


def test_a_learner_on_the_second_node_killed_there_comes_back_there(
    tmp_path: Path, two_nodes: Any
) -> None:
    _, second = two_nodes
    assert {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} == {"127.0.0.1"}
    local = tmp_path / "local"
    local.mkdir()
    assert run_experiment(config(local), local / "runs", 1, False, console=quiet()) == 0
    learners = 'placement = "ray"\nnum_cpus = 1\nresources = { gpu_host = 1 }\nmax_restarts = 1'
    cfg = config(tmp_path, learners)
    root = tmp_path / "runs"
    kill = KillOnce(root / "tiny" / "trial-0" / "iterations.csv", after=2)
    assert run_experiment(cfg, root, 1, False, kill, console=quiet()) == 0
    assert kill.nodes == [second.node_id] * 2, "not placed (again) on the second node"
    assert rows(root, 0) == rows(local / "runs", 0)
    back = [e for e in events(root, 0) if e.get("event") == "learner_restarted"]
    assert len(back) == 1, back


def test_losing_the_only_node_with_the_resource_stops_the_run_with_a_checkpoint(
    tmp_path: Path, two_nodes: Any
) -> None:
    """Last in this module: it removes the second node."""
    from casi_orchestrator.checkpoint import read_checkpoint

    cluster, second = two_nodes
    cfg = config(tmp_path, 'placement = "ray"\nresources = { gpu_host = 1 }\nremote_wait = 0')
    root = tmp_path / "runs"
    csv_path = root / "tiny" / "trial-0" / "iterations.csv"

    def lose_the_node() -> bool:
        written = csv_path.exists() and len(csv_path.read_text().splitlines()) - 1
        if written and written >= 2 and second in cluster.worker_nodes:
            cluster.remove_node(second)
        return False

    out = io.StringIO()
    code = run_experiment(cfg, root, 1, False, lose_the_node, console=Console(file=out, width=400))
    text = out.getvalue()
    assert code == 1, text
    assert "the learner of agent 'a0' (a Ray actor) reported no address within 60 s" in text
    assert "resources = {'gpu_host': 1.0}" in text and "--resume" in text
    _, meta = read_checkpoint(root / "tiny" / "trial-0" / "checkpoint")
    assert meta["iteration"] >= 2 and meta["finished"] is False
