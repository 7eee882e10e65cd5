"""The Net contract suite against real gRPC servers for TorchNet: plaintext, TLS with a token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from casi_learner.server import serving
from casi_proto.compliance import Endpoint, NetContract
from casi_proto.tls import channel_credentials

from ..conftest import make_test_ca

pytest.importorskip("torch")
from casi_learner.torch_net import TorchNet  # noqa: E402

TOKEN = "contract-token"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


class TestTorchNet(NetContract):
    trainable = True
    has_params = True

    @pytest.fixture
    def address(self) -> Iterator[str]:
        with serving(TorchNet("cpu", threads=1)) as address:
            yield address


class TestTorchNetOverTlsWithAToken(NetContract):
    trainable = True
    has_params = True

    @pytest.fixture
    def endpoint(self, certs: Path) -> Iterator[Endpoint]:
        tls = {"tls_cert": certs / "server.pem", "tls_key": certs / "server.key"}
        with serving(TorchNet("cpu", threads=1), token=TOKEN, **tls) as address:
            creds = channel_credentials(root_cert=certs / "ca.pem")
            yield Endpoint(address, credentials=creds, token=TOKEN)


def test_both_learners_claim_the_action_mask() -> None:
    # the masking tests of the suite skip on a server that does not claim it: these must not
    from casi_learner.scripted import ScriptedNet

    cfg = NetContract().make_cfg()
    assert TorchNet("cpu", threads=1).init(cfg).action_mask
    assert ScriptedNet("honest").init(cfg).action_mask
