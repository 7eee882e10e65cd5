"""The Net service over gRPC: decode, call the model code under a lock, encode.

The model code (``casi_proto.api.Net``) never sees grpc. A ``NetError`` it raises
becomes its status code and message; any other exception becomes ``INTERNAL``
with a sentence, and the server keeps serving.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc
from casi.v1 import net_pb2, net_pb2_grpc
from casi_proto import codec
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


def _status(code: str) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, code, grpc.StatusCode.INTERNAL)


class NetServicer(net_pb2_grpc.NetServicer):
    """Serves one ``Net`` object; calls into it one at a time."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self._lock = threading.Lock()
        self._idle = threading.Condition()
        self._in_flight = 0

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no Net call is running or queued; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def _run(self, method: str, context: grpc.ServicerContext, call: Callable[[], R]) -> R:
        with self._idle:
            self._in_flight += 1
        try:
            with self._lock:
                return call()
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

    def Init(self, request: net_pb2.NetCfg, context: grpc.ServicerContext) -> Any:
        return self._run("Init", context, lambda: self.net.init(request))

    def InitHidden(self, request: net_pb2.HiddenCfg, context: grpc.ServicerContext) -> Any:
        def call() -> net_pb2.Empty:
            self.net.init_hidden(request.batch)
            return net_pb2.Empty()

        return self._run("InitHidden", context, call)

    def Predict(self, request: net_pb2.Observations, context: grpc.ServicerContext) -> Any:
        def call() -> net_pb2.Predictions:
            obs = codec.observations_from_proto(request)
            return codec.predictions_to_proto(*self.net.predict(obs))

        return self._run("Predict", context, call)

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
    max_workers: int = 8,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """A started server for ``net`` on ``host:port`` (port 0 picks a free one).

    Returns ``(server, bound port, health servicer)``; health reports SERVING for
    ``""`` and ``casi.v1.Net``. Raises ``OSError`` if the address cannot be bound.
    """
    creds = server_credentials(tls_cert, tls_key, tls_client_ca)
    limit = max_message_mb * 1024 * 1024
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="casi-net"),
        interceptors=[TokenInterceptor(token)] if token is not None else [],
        options=[
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
            ("grpc.so_reuseport", 0),
        ],
    )
    servicer = NetServicer(net)
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
