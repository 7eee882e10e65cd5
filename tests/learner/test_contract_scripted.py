"""The Net contract suite against real gRPC servers for every scripted policy (and behind a
token for one of them)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from casi.v1 import net_pb2
from casi_learner.scripted import ScriptedNet
from casi_learner.server import serving
from casi_proto.client import NetClient
from casi_proto.compliance import Endpoint, NetContract


class ScriptedContract(NetContract):
    trainable = False
    has_params = False
    policy = "honest"

    @pytest.fixture
    def address(self) -> Iterator[str]:
        with serving(ScriptedNet(self.policy)) as address:
            yield address


class TestHonest(ScriptedContract):
    policy = "honest"


class TestLiar(ScriptedContract):
    policy = "liar"


class TestSilent(ScriptedContract):
    policy = "silent"


class TestRandom(ScriptedContract):
    policy = "random"


class TestHonestWithAToken(ScriptedContract):
    policy = "honest"

    @pytest.fixture
    def endpoint(self) -> Iterator[Endpoint]:
        with serving(ScriptedNet(self.policy), token="contract-token") as address:
            yield Endpoint(address, token="contract-token")


# Head layout of the contract config: main head of 9, then two intention heads of 5.
@pytest.mark.parametrize(
    ("policy", "intention"),
    [
        ("honest", net_pb2.INTENTION_COMPLETE_TRUTH),
        ("liar", net_pb2.INTENTION_SPECIFIC_LIE),
        ("silent", net_pb2.INTENTION_IGNORE),
        ("random", None),
    ],
)
def test_policy_logits_choose_noop_and_the_intention(policy: str, intention: int | None) -> None:
    with serving(ScriptedNet(policy)) as address, NetClient(address) as client:
        client.init(NetContract().make_cfg())
        logits, values = client.predict(np.ones((3, 10), np.float32))
    assert np.array_equal(values, np.zeros(3, np.float32))
    main, heads = logits[:, :9], [logits[:, 9:14], logits[:, 14:19]]
    if intention is None:
        assert np.array_equal(logits, np.zeros((3, 19), np.float32))
        return
    assert (main.argmax(axis=1) == 0).all()
    assert all((h.argmax(axis=1) == intention).all() for h in heads)
    # sampling: the chosen entry holds all but exp(-30) of the probability mass
    row = logits[0, 9:14].astype(np.float64)
    p = np.exp(row) / np.exp(row).sum()
    assert p[intention] > 1 - 1e-12
    assert sorted(set(logits[0].tolist())) == [-30.0, 0.0]
