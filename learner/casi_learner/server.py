"""The Net service over gRPC: decode, call the model code under a lock, encode.

The model code (``casi_proto.api.Net``) never sees grpc. A ``NetError`` it raises
becomes its status code and message; any other exception becomes ``INTERNAL``
with a sentence, and the server keeps serving.

Memory held for slow or stalled clients is bounded: every reply is counted against a budget
of bytes (``reply_budget_mb``) from the moment it is built until its call ends, that is until
the client has read it or is gone; a reply that would pass the budget is not sent, the call
fails with RESOURCE_EXHAUSTED at once. Each connection may open at most
``MAX_STREAMS_PER_CONNECTION`` calls at a time, the server runs at most ``MAX_CONCURRENT_RPCS``
handlers (more are refused with RESOURCE_EXHAUSTED), and a connection that does not answer the
server's keepalive pings (a peer that stopped reading) is closed, which frees its replies. On
the Act stream a reply is counted from the moment it is built until gRPC has sent it (flow
control then holds the next one back), so an open stream holds at most one reply.

Every server here offers the Act stream, whatever its Net: Init's reply says so
(``act_stream``) and names the contract's minor version this server speaks.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

import grpc
from casi.v1 import net_pb2, net_pb2_grpc
from casi_proto import PROTOCOL_MINOR, codec
from casi_proto.api import Net
from casi_proto.errors import NetError
from casi_proto.tls import PemSource, read_pem
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from casi_learner.auth import TokenInterceptor

log = logging.getLogger("casi_learner.server")
NET_SERVICE = net_pb2.DESCRIPTOR.services_by_name["Net"].full_name
R = TypeVar("R")
# The NetServicer of each server built here, so that shutdown can wait for its calls.
_SERVICERS: weakref.WeakKeyDictionary[grpc.Server, NetServicer] = weakref.WeakKeyDictionary()
MAX_STREAMS_PER_CONNECTION = 16
MAX_CONCURRENT_RPCS = 64
KEEPALIVE_MS = 60_000  # the server pings every connection this often...
KEEPALIVE_TIMEOUT_MS = 20_000  # ...and closes one that does not answer within this
MB = 1024 * 1024


def _status(code: str) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, code, grpc.StatusCode.INTERNAL)


class ReplyBudget:
    """Bytes of replies built and not yet read by their clients, up to ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def check(self, method: str, size: int) -> None:
        """Raises RESOURCE_EXHAUSTED if ``size`` more bytes would pass the limit."""
        if self.used + size > self.limit:
            self._refuse(method, self.used, size)

    def take(self, method: str, size: int) -> None:
        """Counts ``size`` bytes; raises RESOURCE_EXHAUSTED if they would pass the limit."""
        with self._lock:
            if self.used + size <= self.limit:
                self.used += size
                return
            used = self.used
        self._refuse(method, used, size)

    def _refuse(self, method: str, used: int, size: int) -> None:
        raise NetError(
            "RESOURCE_EXHAUSTED",
            f"{method}: the learner holds {used / MB:.1f} MB of replies that their clients "
            f"have not read yet, and this {size / MB:.1f} MB one would pass its limit of "
            f"{self.limit / MB:g} MB (casi-learner --reply-budget-mb); try again later",
        )

    def give(self, size: int) -> None:
        with self._lock:
            self.used -= size


class NetServicer(net_pb2_grpc.NetServicer):
    """Serves one ``Net`` object; calls into it one at a time."""

    def __init__(self, net: Net, reply_budget: int = 512 * MB) -> None:
        self.net = net
        self.budget = ReplyBudget(reply_budget)
        self._last_size: dict[str, int] = {}  # of each method's last reply
        self._lock = threading.Lock()
        self._idle = threading.Condition()
        self._in_flight = 0

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no Net call is running or queued; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def _run(
        self, method: str, context: grpc.ServicerContext, call: Callable[[], R], hold: bool = True
    ) -> R:
        """``call()`` under the lock; its reply counted until the call ends (``hold``) or
        until the caller gives it back (not ``hold``, the Act stream)."""
        with self._idle:
            self._in_flight += 1
        try:
            # Refused before the reply is built, when one like the last would not fit:
            # memory freed after building it would mostly stay with the process.
            with self._lock:
                self.budget.check(method, self._last_size.get(method, 0))
                reply = call()
                if hold:
                    self._count(method, context, reply)
                else:
                    self.budget.take(method, self._size(method, reply))
            return reply
        except NetError as exc:
            failure = (_status(exc.code), exc.message)
        except Exception as exc:  # the server must outlive any bad request
            log.exception("%s failed inside the learner", method)
            failure = (
                grpc.StatusCode.INTERNAL,
                f"{method} failed inside the learner ({type(exc).__name__}: {exc}); "
                "the learner is still serving, its log has the traceback",
            )
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()
        context.abort(*failure)
        raise AssertionError("unreachable")  # context.abort always raises

    def _size(self, method: str, reply: Any) -> int:
        size: int = reply.ByteSize()
        self._last_size[method] = size
        return size

    def _count(self, method: str, context: grpc.ServicerContext, reply: Any) -> None:
        """Holds ``reply``'s size in the budget until the call ends."""
        size = self._size(method, reply)
        self.budget.take(method, size)
        if not context.add_callback(lambda: self.budget.give(size)):
            self.budget.give(size)  # the call has ended already

    def Init(self, request: net_pb2.NetCfg, context: grpc.ServicerContext) -> Any:
        def call() -> net_pb2.InitReply:
            reply = net_pb2.InitReply()
            reply.CopyFrom(self.net.init(request))
            reply.protocol_minor = PROTOCOL_MINOR
            reply.act_stream = True
            return reply

        return self._run("Init", context, call)

    def InitHidden(self, request: net_pb2.HiddenCfg, context: grpc.ServicerContext) -> Any:
        def call() -> net_pb2.Empty:
            self.net.init_hidden(request.batch)
            return net_pb2.Empty()

        return self._run("InitHidden", context, call)

    def _predict(self, request: net_pb2.Observations) -> net_pb2.Predictions:
        obs = codec.observations_from_proto(request)
        return codec.predictions_to_proto(*self.net.predict(obs))

    def Predict(self, request: net_pb2.Observations, context: grpc.ServicerContext) -> Any:
        return self._run("Predict", context, lambda: self._predict(request))

    def Act(
        self, requests: Iterator[net_pb2.Observations], context: grpc.ServicerContext
    ) -> Iterator[net_pb2.Predictions]:
        """One reply per request, in order; the first refused request ends the stream with
        the status (and the sentence) Predict would have given."""
        for request in requests:
            reply = self._run("Predict", context, partial(self._predict, request), hold=False)
            size = reply.ByteSize()  # as taken (the message does not change)
            try:
                yield reply
            finally:  # sent, or the stream ended
                self.budget.give(size)

    def ResetOptimizer(self, request: net_pb2.OptimCfg, context: grpc.ServicerContext) -> Any:
        def call() -> net_pb2.Empty:
            self.net.reset_optimizer(request)
            return net_pb2.Empty()

        return self._run("ResetOptimizer", context, call)

    def Train(self, request: net_pb2.Sequences, context: grpc.ServicerContext) -> Any:
        def call() -> net_pb2.Loss:
            step, batch = codec.sequences_from_proto(request)
            return codec.loss_to_proto(self.net.train(step, batch))

        return self._run("Train", context, call)

    def GetParams(self, request: net_pb2.Empty, context: grpc.ServicerContext) -> Any:
        return self._run("GetParams", context, lambda: codec.params_to_proto(self.net.get_params()))

    def SetParams(self, request: net_pb2.Params, context: grpc.ServicerContext) -> Any:
        def call() -> net_pb2.Empty:
            self.net.set_params(codec.params_from_proto(request))
            return net_pb2.Empty()

        return self._run("SetParams", context, call)


def server_credentials(
    tls_cert: PemSource,
    tls_key: PemSource,
    tls_client_ca: PemSource = None,
) -> grpc.ServerCredentials | None:
    """TLS (and with a client CA, mutual TLS) credentials; None for plaintext."""
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("TLS needs both a certificate and its key (--tls-cert and --tls-key)")
    if tls_cert is None:
        if tls_client_ca is not None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key as well")
        return None
    pair = [(read_pem(tls_key), read_pem(tls_cert))]
    ca = read_pem(tls_client_ca)
    return grpc.ssl_server_credentials(
        pair, root_certificates=ca, require_client_auth=ca is not None
    )


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def build_server(
    net: Net,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    token: str | None = None,
    tls_cert: PemSource = None,
    tls_key: PemSource = None,
    tls_client_ca: PemSource = None,
    max_message_mb: int = 256,
    reply_budget_mb: int | None = None,
    max_workers: int = 8,
    keepalive_ms: int = KEEPALIVE_MS,
    keepalive_timeout_ms: int = KEEPALIVE_TIMEOUT_MS,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """A started server for ``net`` on ``host:port`` (port 0 picks a free one).

    ``reply_budget_mb`` (default twice ``max_message_mb``) bounds the replies held for
    clients that have not read them; a connection that does not answer a keepalive ping
    (sent every ``keepalive_ms``) within ``keepalive_timeout_ms`` is closed. An empty ``token`` is a ValueError.

    Returns ``(server, bound port, health servicer)``; health reports SERVING for
    ``""`` and ``casi.v1.Net``. Raises ``OSError`` if the address cannot be bound.
    """
    creds = server_credentials(tls_cert, tls_key, tls_client_ca)
    limit = max_message_mb * MB
    budget = (reply_budget_mb or 2 * max_message_mb) * MB
    if budget < limit:
        raise ValueError(
            f"the reply budget ({budget // MB} MB) must hold one message of the limit "
            f"({max_message_mb} MB)"
        )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="casi-net"),
        interceptors=[TokenInterceptor(token)] if token is not None else [],
        options=[
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
            ("grpc.so_reuseport", 0),
            ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
            ("grpc.keepalive_time_ms", keepalive_ms),
            ("grpc.keepalive_timeout_ms", keepalive_timeout_ms),
            ("grpc.http2.ping_timeout_ms", keepalive_timeout_ms),
            ("grpc.http2.max_pings_without_data", 0),
        ],
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
    )
    servicer = NetServicer(net, budget)
    _SERVICERS[server] = servicer
    net_pb2_grpc.add_NetServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (NET_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    address = host_port(host, port)
    try:
        bound = (
            server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
        )
    except RuntimeError as exc:
        raise OSError(f"cannot bind {address}: {exc}") from None
    if bound == 0:
        raise OSError(f"cannot bind {address} (in use, or not an address of this host)")
    server.start()
    for service in ("", NET_SERVICE):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return server, bound, health_servicer


def shutdown(server: grpc.Server, health_servicer: health.HealthServicer, grace: float) -> None:
    """Health NOT_SERVING, refuse new calls, let Net calls in flight finish (up to ``grace`` s).

    Open health Watch streams are then cancelled rather than waited for.
    """
    health_servicer.enter_graceful_shutdown()
    stopped = server.stop(grace)
    servicer = _SERVICERS.get(server)
    if servicer is not None:
        servicer.wait_idle(grace)
    server.stop(0)
    stopped.wait()


@contextmanager
def serving(net: Net, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> Iterator[str]:
    """Serve ``net`` for the duration of a ``with`` block; yields ``host:port``."""
    server, bound, health_servicer = build_server(net, host, port, **kwargs)
    try:
        yield host_port(host, bound)
    finally:
        shutdown(server, health_servicer, grace=1.0)
