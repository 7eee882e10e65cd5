"""Contract tests that any implementation of the Net service can run unchanged.

Subclass :class:`NetContract` in a pytest module (name the subclass ``Test...``), declare
what the implementation can do with the class flags, and give the server under test by one
fixture: ``address`` (a plaintext server, ``host:port``) or ``endpoint`` (an
:class:`Endpoint`: address, channel credentials, the token the server was started with)::

    class TestMyNet(NetContract):
        trainable = True

        @pytest.fixture
        def address(self):
            with serving(MyNet()) as address:  # casi_learner.server.serving
                yield address

    class TestMyNetBehindTlsAndAToken(NetContract):
        @pytest.fixture
        def endpoint(self):
            server = start_my_server(port=0, token="t", cert=..., key=...)  # in any language
            creds = casi_proto.tls.channel_credentials(root_cert="ca.pem")
            yield Endpoint(f"127.0.0.1:{server.port}", credentials=creds, token="t")
            server.stop()

The fixture is called for every test. It may start a fresh server for each, or share one
between tests (a faster start for a server in a process of its own): every test begins
with a successful Init, which builds the model and its state anew, but for those marked
:func:`fresh_server`, which call the server before any Init and need one of their own
(:func:`needs_fresh_server`)::

    @pytest.fixture
    def address(self, request, shared_server):
        if needs_fresh_server(request):
            with start_my_server() as server:
                yield server.address
        else:
            yield shared_server.address

The tests reach the server over gRPC only: through :class:`~casi_proto.client.NetClient` on
a channel of the endpoint's for well-formed calls, and through the bare stub (``raw``) for
refused or malformed ones, whose messages are then the server's status details, word for
word.

The tests come in one class per group, which can also be run on their own:
:class:`InitContract` (Init, InitHidden), :class:`PredictContract`, :class:`TrainContract`
(Train, ResetOptimizer), :class:`ParamsContract` (GetParams, SetParams),
:class:`ActContract` (the Act stream, skipped for a server whose InitReply does not offer it:
the unary rpcs alone are a complete implementation) and :class:`ServiceContract` (health
service, reflection; token checks when the endpoint has one).
"""

from casi_proto.compliance.act import ActContract
from casi_proto.compliance.base import (
    ContractBase,
    Endpoint,
    RawCall,
    act_raw,
    assert_params_equal,
    call_raw,
    expect_error,
    fresh_server,
    needs_fresh_server,
    raw_tensor,
)
from casi_proto.compliance.init import InitContract
from casi_proto.compliance.params import ParamsContract
from casi_proto.compliance.predict import PredictContract
from casi_proto.compliance.service import ServiceContract
from casi_proto.compliance.train import TrainContract


class NetContract(
    InitContract, PredictContract, ActContract, TrainContract, ParamsContract, ServiceContract
):
    """Every contract test; see the module docstring."""


__all__ = [
    "ActContract",
    "ContractBase",
    "Endpoint",
    "InitContract",
    "NetContract",
    "ParamsContract",
    "PredictContract",
    "RawCall",
    "ServiceContract",
    "TrainContract",
    "act_raw",
    "assert_params_equal",
    "call_raw",
    "expect_error",
    "fresh_server",
    "needs_fresh_server",
    "raw_tensor",
]
