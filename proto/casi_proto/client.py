"""``NetClient``: a remote learner behind the ``casi_proto.api.Net`` interface.

Every call has a deadline (``timeout``; ``train_timeout`` for Train). Only the
calls that are safe to repeat are retried, a bounded number of times and only
on ``UNAVAILABLE``: Predict, GetParams and Train (idempotent by its ``step``).
Every failure is a :class:`NetError` whose message starts with
``agent <name> at <address>: ``. Decoded arrays are read-only views of the reply.

Reachability is asked of the standard gRPC health service. A learner that serves
``casi.v1.Net`` without it (written from the proto alone) still plugs in: when the health
service is missing, the client warns once and from then on probes the Net service with an
empty Predict, which every learner answers (INVALID_ARGUMENT, FAILED_PRECONDITION...) without
changing anything; a server that serves neither is refused at once, saying so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import grpc
import numpy as np
from casi.v1 import net_pb2, net_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from casi_proto import codec
from casi_proto.api import Params, Sequences
from casi_proto.errors import UNAVAILABLE, NetError
from casi_proto.tls import PemSource, channel_credentials

log = logging.getLogger("casi_proto.client")
UNIMPLEMENTED = "UNIMPLEMENTED"
# Codes of a probe that did not reach a Net service that answers.
_NO_ANSWER = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

# Reconnect quickly after a learner restarts instead of gRPC's 1 s .. 120 s backoff. Not
# grpc.min_reconnect_backoff_ms: gRPC also takes it as the connect timeout, so a value of
# 100 ms failed every connection whose handshake took longer (a busy host, a slow link, TLS).
_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def _open_channel(
    address: str,
    max_message_mb: int,
    root_cert: PemSource,
    client_cert: PemSource,
    client_key: PemSource,
    server_name: str | None,
) -> grpc.Channel:
    limit = max_message_mb * 1024 * 1024
    options: list[tuple[str, int | str]] = [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
        *_RECONNECT,
    ]
    if root_cert is None and client_cert is None and client_key is None:
        return grpc.insecure_channel(address, options=options)
    creds = channel_credentials(root_cert, client_cert, client_key)
    if server_name:  # the name the server's certificate is checked against
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(address, creds, options=options)


class NetClient:
    """Client of one learner's Net service; implements ``casi_proto.api.Net``.

    TLS is on when ``root_cert`` (the CA the server's certificate must chain to) or a client
    certificate is given; ``client_cert`` + ``client_key`` add mutual TLS; ``server_name``
    replaces the address's host when the server's certificate is checked. ``channel`` is an
    open channel to ``address`` to use instead (its credentials and message limits are its
    own, so the TLS arguments and ``max_message_mb`` do not apply); ``close`` closes it.
    """

    def __init__(
        self,
        address: str,
        *,
        name: str = "",
        token: str | None = None,
        root_cert: PemSource = None,
        client_cert: PemSource = None,
        client_key: PemSource = None,
        server_name: str | None = None,
        timeout: float = 60.0,
        train_timeout: float = 600.0,
        max_message_mb: int = 256,
        retries: int = 3,
        retry_backoff: float = 0.2,
        channel: grpc.Channel | None = None,
    ) -> None:
        tls = (root_cert, client_cert, client_key, server_name)
        if channel is not None and any(x is not None for x in tls):
            raise ValueError("give either a channel or the TLS arguments to make one, not both")
        self.address = address
        self.name = name
        self.timeout = timeout
        self.train_timeout = train_timeout
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.prefix = f"agent {name} at {address}: " if name else f"agent at {address}: "
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        if channel is None:
            channel = _open_channel(address, max_message_mb, *tls)
        self._channel = channel
        self._stub = net_pb2_grpc.NetStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._no_health_service = False

    # -- plumbing ---------------------------------------------------------------

    def _fail(self, method: str, exc: grpc.RpcError, timeout: float, attempts: int) -> NetError:
        code = exc.code()  # type: ignore[attr-defined]
        details = exc.details() or code.name  # type: ignore[attr-defined]
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            details = f"no reply within the deadline of {timeout:g} s"
        elif code == grpc.StatusCode.UNAVAILABLE:
            details = f"not reachable after {attempts} attempt(s) ({details})"
        elif code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
            details = f"{details} (raise max_message_mb / --max-message-mb on both ends)"
        return NetError(code.name, f"{self.prefix}{method}: {details}")

    def _call(self, method: str, request: Any, *, retry: bool = False, timeout: float = 0) -> Any:
        rpc: Callable[..., Any] = getattr(self._stub, method)
        timeout = timeout or self.timeout
        attempts = 1 + (self.retries if retry else 0)
        for attempt in range(1, attempts + 1):
            try:
                return rpc(request, timeout=timeout, metadata=self._metadata)
            except grpc.RpcError as exc:
                unavailable = exc.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
                if not unavailable or attempt == attempts:
                    raise self._fail(method, exc, timeout, attempt) from None
                time.sleep(self.retry_backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def _decode(self, method: str, decode: Callable[[], Any]) -> Any:
        try:
            return decode()
        except NetError as exc:
            raise NetError(exc.code, f"{self.prefix}{method} reply: {exc.message}") from None

    def _encode(self, method: str, encode: Callable[[], Any]) -> Any:
        try:
            return encode()
        except NetError as exc:
            raise NetError(exc.code, f"{self.prefix}{method}: {exc.message}") from None

    # -- health -----------------------------------------------------------------

    def health(self, timeout: float = 1.0) -> str:
        """The server's overall health status name (``SERVING``, ``NOT_SERVING``...).

        Without a health service on the server, ``SERVING`` if its Net service answers.
        """
        if self._no_health_service:
            return self._probe_net(timeout)
        try:
            reply = self._health.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:  # type: ignore[attr-defined]
                raise self._fail("health check", exc, timeout, 1) from None
            self._no_health_service = True
            status = self._probe_net(timeout)
            log.warning(
                "%sthe learner does not serve the gRPC health service (grpc.health.v1.Health); "
                "its reachability is checked with Net calls instead",
                self.prefix,
            )
            return status
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def _probe_net(self, timeout: float) -> str:
        """SERVING if the Net service answers an empty Predict with any status of its own."""
        try:
            self._stub.Predict(net_pb2.Observations(), timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            if code == grpc.StatusCode.UNIMPLEMENTED:
                raise NetError(
                    UNIMPLEMENTED,
                    f"{self.prefix}serves neither the gRPC health service nor casi.v1.Net "
                    f"(Predict: {exc.details()}); is this a CASI learner?",  # type: ignore[attr-defined]
                ) from None
            if code in _NO_ANSWER:
                raise self._fail("Net probe", exc, timeout, 1) from None
        return "SERVING"

    def wait_ready(
        self,
        timeout: float,
        on_slow: Callable[[float, str], None] | None = None,
        slow_every: float = 10.0,
    ) -> None:
        """Poll the health service until it reports SERVING, for at most ``timeout`` s.

        ``on_slow(waited, last)`` is called every ``slow_every`` s of waiting with the last
        answer. A server that serves neither health nor Net fails at once (UNIMPLEMENTED).
        """
        start = time.monotonic()
        deadline = start + timeout
        last = "no answer"
        told = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                status = self.health(timeout=max(0.05, min(1.0, remaining)))
                if status == "SERVING":
                    return
                last = f"health status {status}"
            except NetError as exc:
                if exc.code == UNIMPLEMENTED:
                    raise
                last = exc.message.removeprefix(f"{self.prefix}health check: ")
            waited = time.monotonic() - start
            if on_slow is not None and waited >= slow_every * (told + 1) and waited < timeout:
                told += 1
                on_slow(waited, last)
            if time.monotonic() >= deadline:
                raise NetError(
                    UNAVAILABLE,
                    f"{self.prefix}not reachable after {timeout:g} s (last health check: {last}); "
                    "is the learner running and is the address right?",
                )
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    # -- Net --------------------------------------------------------------------

    def init(self, cfg: net_pb2.NetCfg) -> net_pb2.InitReply:
        return self._call("Init", cfg)

    def init_hidden(self, batch: int) -> None:
        self._call("InitHidden", net_pb2.HiddenCfg(batch=batch))

    def predict(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        request = self._encode("Predict", lambda: codec.observations_to_proto(obs))
        reply = self._call("Predict", request, retry=True)
        logits, values = self._decode("Predict", lambda: codec.predictions_from_proto(reply))
        if logits.shape[0] != len(obs):
            raise NetError(
                "INTERNAL",
                f"{self.prefix}Predict reply: {logits.shape[0]} rows of logits for "
                f"{len(obs)} observations",
            )
        return logits, values

    def reset_optimizer(self, optim: net_pb2.OptimCfg) -> None:
        self._call("ResetOptimizer", optim)

    def train(self, step: int, batch: Sequences) -> dict[str, float]:
        request = self._encode("Train", lambda: codec.sequences_to_proto(step, batch))
        reply = self._call("Train", request, retry=True, timeout=self.train_timeout)
        return codec.loss_from_proto(reply)

    def get_params(self) -> Params:
        reply = self._call("GetParams", net_pb2.Empty(), retry=True)
        return self._decode("GetParams", lambda: codec.params_from_proto(reply))  # type: ignore[no-any-return]

    def set_params(self, params: Params) -> None:
        request = self._encode("SetParams", lambda: codec.params_to_proto(params))
        self._call("SetParams", request)

    # -- lifetime ---------------------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> NetClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
