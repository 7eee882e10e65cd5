"""What every group of contract tests shares: the server under test, fixtures, helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import grpc
import numpy as np
import pytest
from casi.v1 import net_pb2, net_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from casi_proto import PROTOCOL_MINOR, PROTOCOL_VERSION
from casi_proto.api import Net, Params, Sequences
from casi_proto.client import NetClient
from casi_proto.errors import NetError
from casi_proto.heads import head_slices, log_softmax

Metadata = tuple[tuple[str, str], ...]
RawCall = Callable[[str, Any], Any]
Test = TypeVar("Test", bound=Callable[..., None])
_LIMIT = 256 * 1024 * 1024
_FRESH = "_casi_fresh_server"


def fresh_server(test: Test) -> Test:
    """Marks a contract test whose first call is not a successful Init: it needs a server that
    no Init has reached. Every other test begins with Init, which builds everything anew, so
    an ``address`` fixture may share one server between those (:func:`needs_fresh_server`)."""
    setattr(test, _FRESH, True)
    return test


def needs_fresh_server(request: pytest.FixtureRequest) -> bool:
    """True if the test of ``request`` (a function-scoped fixture's) is marked
    :func:`fresh_server`: an ``address`` or ``endpoint`` fixture that shares a server between
    tests gives this one a new server."""
    return bool(getattr(request.function, _FRESH, False))


@dataclass(frozen=True)
class Endpoint:
    """The server under test: where it listens and how to reach it.

    ``credentials`` None is plaintext; ``token`` is the bearer token the server was started
    with (None: it needs none); ``options`` are extra channel options, e.g.
    ``("grpc.ssl_target_name_override", "localhost")``.
    """

    address: str
    credentials: grpc.ChannelCredentials | None = None
    token: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def channel(self) -> grpc.Channel:
        """A new channel to the server; the caller closes it."""
        options = [
            ("grpc.max_send_message_length", _LIMIT),
            ("grpc.max_receive_message_length", _LIMIT),
            *self.options,
        ]
        if self.credentials is None:
            return grpc.insecure_channel(self.address, options=options)
        return grpc.secure_channel(self.address, self.credentials, options=options)

    def metadata(self) -> Metadata:
        """The call metadata the server needs: its token, if any."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def call_raw(channel: grpc.Channel, method: str, request: Any, metadata: Metadata = ()) -> Any:
    """One Net call on the bare stub; a failure becomes a NetError holding the server's
    status code and details, with nothing added. For the Act stream: ``request`` is sent
    as a stream of one and its one reply returned."""
    if method == "Act":
        replies = act_raw(channel, [request], metadata)
        if len(replies) != 1:
            raise AssertionError(f"Act: {len(replies)} replies to one request")
        return replies[0]
    stub = net_pb2_grpc.NetStub(channel)
    try:
        return getattr(stub, method)(request, timeout=30.0, metadata=metadata or None)
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
        raise NetError(code.name, details or "") from None


def act_raw(
    channel: grpc.Channel,
    requests: list[net_pb2.Observations],
    metadata: Metadata = (),
    replies: list[net_pb2.Predictions] | None = None,
) -> list[net_pb2.Predictions]:
    """Every request sent on one Act stream before any reply is read (then half-closed);
    returns the replies. A failure becomes a NetError as in :func:`call_raw`; the replies
    that came before it are then in ``replies`` if given."""
    stub = net_pb2_grpc.NetStub(channel)
    got = [] if replies is None else replies
    try:
        for reply in stub.Act(iter(requests), timeout=30.0, metadata=metadata or None):
            got.append(reply)
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
        raise NetError(code.name, details or "") from None
    return got


def connect(channel: grpc.Channel, timeout: float = 30.0) -> None:
    """Waits until ``channel`` is connected: any answer to a health check (even UNIMPLEMENTED
    or UNAUTHENTICATED) came over a connection. (``grpc.channel_ready_future`` would do, but
    a channel it watched takes 0.2 s to close.)"""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout, wait_for_ready=True)
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise AssertionError(
                f"no connection to the server under test in {timeout:g} s: {code.name} {details}"
            ) from None


def expect_error(code: str, call: Callable[[], Any], *words: str) -> NetError:
    """Run ``call``; assert it raises a NetError with ``code`` whose message has ``words``."""
    with pytest.raises(NetError) as info:
        call()
    err = info.value
    assert err.code == code, f"expected {code}, got {err}"
    for word in words:
        assert word in err.message, f"{word!r} not in the message {err.message!r}"
    return err


def assert_params_equal(a: Params, b: Params) -> None:
    """Bit-exact equality of two Params (key sets, dtypes, shapes, bytes, version)."""
    assert a.version == b.version
    for kind in ("tensors", "optimizer"):
        x, y = getattr(a, kind), getattr(b, kind)
        assert sorted(x) == sorted(y), f"{kind} keys differ"
        for k in x:
            assert x[k].dtype == y[k].dtype and x[k].shape == y[k].shape, f"{kind}[{k}]"
            assert x[k].tobytes() == y[k].tobytes(), f"{kind}[{k}] differs"


def raw_tensor(dtype: int, shape: list[int], data: bytes) -> net_pb2.Tensor:
    """A Tensor exactly as given, even if invalid (for malformed-request tests)."""
    return net_pb2.Tensor(dtype=dtype, shape=shape, data=data)  # type: ignore[arg-type]


class ContractBase:
    """Fixtures and helpers of the contract tests; see :mod:`casi_proto.compliance`."""

    #: Train changes the parameters (False for scripted policies).
    trainable: ClassVar[bool] = True
    #: GetParams returns model tensors (False for scripted policies).
    has_params: ClassVar[bool] = True
    obs_dim: ClassVar[int] = 10
    head_sizes: ClassVar[tuple[int, ...]] = (9, 5, 5)

    # -- the server under test: a subclass overrides `address` or `endpoint` ----------------

    @pytest.fixture
    def address(self) -> Iterator[str]:
        raise NotImplementedError("a contract subclass provides an `address` or `endpoint` fixture")

    @pytest.fixture
    def endpoint(self, address: str) -> Endpoint:
        return Endpoint(address)

    # -- fixtures -------------------------------------------------------------------------------

    @pytest.fixture
    def client(self, endpoint: Endpoint) -> Iterator[NetClient]:
        """The caller the orchestrator uses, on a channel of the endpoint's."""
        with NetClient(
            endpoint.address,
            name="contract",
            token=endpoint.token,
            timeout=30.0,
            channel=endpoint.channel(),
        ) as c:
            c.wait_ready(10.0)
            yield c

    @pytest.fixture
    def ready(self, client: NetClient) -> NetClient:
        client.init(self.make_cfg())
        return client

    @pytest.fixture
    def channel(self, endpoint: Endpoint) -> Iterator[grpc.Channel]:
        """A channel to the server, connected."""
        with endpoint.channel() as channel:
            connect(channel)
            yield channel

    @pytest.fixture
    def raw(self, endpoint: Endpoint, channel: grpc.Channel) -> RawCall:
        """``raw(method, request)`` on the bare stub: errors carry the server's words only."""

        def call(method: str, request: Any) -> Any:
            return call_raw(channel, method, request, endpoint.metadata())

        return call

    # -- helpers ------------------------------------------------------------------------------

    def make_cfg(self, **changes: Any) -> net_pb2.NetCfg:
        cfg = net_pb2.NetCfg(
            protocol_version=PROTOCOL_VERSION,
            protocol_minor=PROTOCOL_MINOR,
            obs_dim=self.obs_dim,
            head_sizes=list(self.head_sizes),
            hidden_sizes=[16],
            seed=7,
            loss=net_pb2.LOSS_PPO,
            optim=net_pb2.OptimCfg(kind=net_pb2.OPTIM_ADAM, lr=1e-2, eps=1e-5),
            clip=0.2,
            value_coef=0.5,
            entropy_coef=0.01,
            epochs=2,
            minibatches=2,
            max_grad_norm=0.5,
            activation=net_pb2.ACTIVATION_TANH,
        )
        for key, value in changes.items():
            field = getattr(cfg, key)
            if isinstance(value, list):
                del field[:]
                field.extend(value)
            else:
                setattr(cfg, key, value)
        return cfg

    def make_obs(self, batch: int, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).random((batch, self.obs_dim), dtype=np.float32)

    def make_sequences(self, net: Net, b: int = 4, t: int = 3, seed: int = 0) -> Sequences:
        """A plausible rollout: actions sampled from the net, logp_old and values_old its own."""
        rng = np.random.default_rng(seed)
        obs = rng.random((b * t, self.obs_dim), dtype=np.float32)
        logits, values = net.predict(obs)
        actions = np.zeros((b * t, len(self.head_sizes)), np.int64)
        logp = np.zeros(b * t, np.float32)
        for h, cols in enumerate(head_slices(self.head_sizes)):
            lp = log_softmax(logits[:, cols])
            actions[:, h] = [
                rng.choice(lp.shape[1], p=np.exp(row) / np.exp(row).sum()) for row in lp
            ]
            logp += lp[np.arange(b * t), actions[:, h]].astype(np.float32)
        adv = rng.standard_normal((b, t)).astype(np.float32)
        return Sequences(
            obs=obs.reshape(b, t, self.obs_dim),
            actions=actions.reshape(b, t, -1),
            logp_old=logp.reshape(b, t),
            values_old=values.reshape(b, t).astype(np.float32),
            advantages=adv,
            returns=(adv + values.reshape(b, t)).astype(np.float32),
            mask=np.ones((b, t), np.float32),
        )

    def make_blank_sequences(self, b: int = 2, t: int = 3) -> Sequences:
        """A well-formed batch that needs no model: zero actions, all steps acted."""
        zeros = np.zeros((b, t), np.float32)
        return Sequences(
            obs=self.make_obs(b * t).reshape(b, t, self.obs_dim),
            actions=np.zeros((b, t, len(self.head_sizes)), np.int64),
            logp_old=zeros,
            values_old=zeros,
            advantages=zeros,
            returns=zeros,
            mask=np.ones((b, t), np.float32),
        )
