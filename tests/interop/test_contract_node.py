"""The Net contract suite against the Node/TypeScript server of interop/node, real processes:
the linear actor-critic that learns (PPO, and A2C), the four scripted policies, and the
service contract behind a token. A test that begins with Init is served by a process shared
with the other tests of its command line; one marked ``fresh_server`` gets a process of its
own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from casi.v1 import net_pb2
from casi_proto.client import NetClient
from casi_proto.compliance import (
    Endpoint,
    NetContract,
    PredictContract,
    ServiceContract,
    TrainContract,
    needs_fresh_server,
)

from .conftest import NodeNet


def serve(
    request: pytest.FixtureRequest,
    node_nets: Callable[..., NodeNet],
    node_net: Callable[..., NodeNet],
    *args: str,
    env: dict[str, str] | None = None,
) -> NodeNet:
    """casi-node-net ``args``: a new process for a test marked ``fresh_server``, else the
    shared one."""
    start = node_nets if needs_fresh_server(request) else node_net
    return start(*args, env=env)


class NodeServer:
    """casi-node-net serving ``policy`` (:func:`serve`)."""

    policy = "linear"

    @pytest.fixture
    def address(
        self,
        request: pytest.FixtureRequest,
        node_nets: Callable[..., NodeNet],
        node_net: Callable[..., NodeNet],
    ) -> str:
        return serve(request, node_nets, node_net, "--policy", self.policy).address


@pytest.mark.expensive
class TestLinear(NodeServer, NetContract):
    policy = "linear"


@pytest.mark.expensive
class TestLinearA2C(NodeServer, TrainContract):
    """Train again with Init asking for A2C (one pass, advantages as given)."""

    policy = "linear"

    def make_cfg(self, **changes: Any) -> net_pb2.NetCfg:
        return super().make_cfg(**{"loss": net_pb2.LOSS_A2C, **changes})


class ScriptedServer(NodeServer):
    trainable = False
    has_params = False


@pytest.mark.expensive
class TestHonest(ScriptedServer, NetContract):
    policy = "honest"


# The other scripted policies share the honest one's code but for their logits.
# (Init is policy-independent: the honest class covers it.)
@pytest.mark.expensive
class TestLiar(ScriptedServer, PredictContract):
    policy = "liar"


@pytest.mark.expensive
class TestSilent(ScriptedServer, PredictContract):
    policy = "silent"


@pytest.mark.expensive
class TestRandom(ScriptedServer, PredictContract):
    policy = "random"


class TestLinearWithAToken(ServiceContract):
    @pytest.fixture
    def endpoint(
        self,
        request: pytest.FixtureRequest,
        node_nets: Callable[..., NodeNet],
        node_net: Callable[..., NodeNet],
    ) -> Endpoint:
        env = {"CASI_TOKEN": "contract-token"}
        net = serve(request, node_nets, node_net, "--policy", "linear", env=env)
        return Endpoint(net.address, token="contract-token")


@pytest.mark.parametrize(
    ("policy", "intention"),
    [
        ("honest", net_pb2.INTENTION_COMPLETE_TRUTH),
        ("liar", net_pb2.INTENTION_SPECIFIC_LIE),
        ("silent", net_pb2.INTENTION_IGNORE),
        ("random", None),
    ],
)
def test_scripted_logits_are_those_of_the_python_policies(
    node_net: Callable[..., NodeNet], policy: str, intention: int | None
) -> None:
    from casi_learner.scripted import ScriptedNet

    cfg = NetContract().make_cfg()
    obs = np.ones((3, 10), np.float32)
    with NetClient(node_net("--policy", policy).address) as client:
        client.init(cfg)
        logits, values = client.predict(obs)
    python = ScriptedNet(policy)
    python.init(cfg)
    want_logits, want_values = python.predict(obs)
    np.testing.assert_array_equal(logits, want_logits)
    np.testing.assert_array_equal(values, want_values)
    if intention is not None:
        assert (logits[:, 9:14].argmax(axis=1) == intention).all()
