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

Predict goes over the Act stream (one stream per client, opened at the first Predict after an
Init whose reply offers it, kept open for the run) and over unary Predict with a server that
does not offer it (``act_stream`` false: an older or a foreign one). The stream is per request
what unary Predict is: each request has the deadline ``timeout`` (a watchdog thread of the
stream cancels it when the oldest unanswered request is older), an ``UNAVAILABLE`` failure is
retried on a new stream, and an error ends the stream, which the next Predict opens again.
:meth:`NetClient.predict_async` sends a Predict and returns at once, so that a caller can
have several in flight (the pipelined rollout). A server whose InitReply names another major
``protocol_version`` is refused; another ``protocol_minor`` is logged once as a warning.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import grpc
import numpy as np
from casi.v1 import net_pb2, net_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from casi_proto import PROTOCOL_MINOR, PROTOCOL_VERSION, codec
from casi_proto.api import Params, Prediction, Sequences
from casi_proto.errors import FAILED_PRECONDITION, UNAVAILABLE, NetError
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


_END = object()  # closes a stream's request iterator


class StreamFailed(Exception):
    """An Act stream ended: ``code`` (a grpc.StatusCode) and the server's ``details``."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class ActStream:
    """One open Act stream: requests leave in order, and replies are matched to them in order.

    ``send`` returns a ticket at once; ``receive(ticket)`` waits for that request's reply
    (whichever thread reads the stream keeps the replies of the others for them). When the
    oldest unanswered request has waited ``timeout`` s, a watchdog thread cancels the stream
    and every waiting request fails with DEADLINE_EXCEEDED. Any failure ends the stream.
    """

    def __init__(self, stub: net_pb2_grpc.NetStub, metadata: Any, timeout: float) -> None:
        self.timeout = timeout
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._call = stub.Act(iter(self._requests.get, _END), metadata=metadata)
        self._cond = threading.Condition()
        self._sent = self._read = 0
        self._sent_at: list[float] = []  # of the unanswered requests, oldest first
        self._replies: dict[int, net_pb2.Predictions] = {}
        self._reading = False
        self._failure: StreamFailed | None = None
        self._closed = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="casi-act-deadline", daemon=True)
        self._watchdog.start()

    @property
    def broken(self) -> bool:
        return self._failure is not None or self._closed.is_set()

    def send(self, request: net_pb2.Observations) -> int:
        with self._cond:
            if self._failure is not None:
                raise self._failure
            ticket = self._sent
            self._sent += 1
            self._sent_at.append(time.monotonic())
            self._requests.put(request)
        return ticket

    def receive(self, ticket: int) -> net_pb2.Predictions:
        with self._cond:
            while ticket not in self._replies:
                if self._failure is not None:
                    raise self._failure
                if not self._reading:
                    self._reading = True
                    break
                self._cond.wait()
            else:
                return self._replies.pop(ticket)
        return self._read_until(ticket)

    def _read_until(self, ticket: int) -> net_pb2.Predictions:
        try:
            while True:
                reply = next(self._call)
                with self._cond:
                    n = self._read
                    self._read += 1
                    self._sent_at.pop(0)
                    if n == ticket:
                        self._reading = False
                        self._cond.notify_all()
                        return reply  # type: ignore[no-any-return]
                    self._replies[n] = reply
                    self._cond.notify_all()
        except grpc.RpcError as exc:
            failure = self._failed_with(exc.code(), exc.details() or "")  # type: ignore[attr-defined]
        except StopIteration:
            failure = self._failed_with(
                grpc.StatusCode.INTERNAL, "the server ended the Act stream before this reply"
            )
        raise failure

    def _failed_with(self, code: grpc.StatusCode, details: str) -> StreamFailed:
        with self._cond:
            if self._failure is None:
                if code == grpc.StatusCode.CANCELLED and self._late():
                    code = grpc.StatusCode.DEADLINE_EXCEEDED
                self._failure = StreamFailed(code, details)
            self._reading = False
            self._cond.notify_all()
        self.close()
        return self._failure

    def _late(self) -> bool:
        return bool(self._sent_at) and time.monotonic() - self._sent_at[0] >= self.timeout

    def _watch(self) -> None:
        tick = min(1.0, self.timeout / 10)
        while not self._closed.wait(tick):
            with self._cond:
                late = self._late()
            if late:
                self._call.cancel()
                return

    def close(self) -> None:
        """Ends the stream (idempotent); unanswered requests fail."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._requests.put(_END)
        self._call.cancel()


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
        self.use_stream = True
        """Use the Act stream when the server offers it (False: unary Predict always)."""
        self.act_stream = False
        """Whether the server's last InitReply offered the Act stream."""
        self._stream: ActStream | None = None
        self._stream_lock = threading.Lock()
        self._warned_minor = False

    # -- plumbing ---------------------------------------------------------------

    def _fail(self, method: str, exc: grpc.RpcError, timeout: float, attempts: int) -> NetError:
        code = exc.code()  # type: ignore[attr-defined]
        return self._failure(method, code, exc.details() or "", timeout, attempts)  # type: ignore[attr-defined]

    def _failure(
        self, method: str, code: grpc.StatusCode, details: str, timeout: float, attempts: int
    ) -> NetError:
        details = details or code.name
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
        if not cfg.protocol_minor:  # the minor this client speaks
            sent = net_pb2.NetCfg()
            sent.CopyFrom(cfg)
            sent.protocol_minor = PROTOCOL_MINOR
            cfg = sent
        reply: net_pb2.InitReply = self._call("Init", cfg)
        self._check_versions(reply)
        self.act_stream = reply.act_stream
        return reply

    def _check_versions(self, reply: net_pb2.InitReply) -> None:
        """A server of another major version is refused; another minor one is warned of."""
        if reply.protocol_version != PROTOCOL_VERSION:
            raise NetError(
                FAILED_PRECONDITION,
                f"{self.prefix}Init reply: the learner speaks casi.v1 protocol "
                f"{reply.protocol_version}, this client {PROTOCOL_VERSION}; install matching "
                "casi-proto versions",
            )
        if reply.protocol_minor != PROTOCOL_MINOR and not self._warned_minor:
            self._warned_minor = True
            log.warning(
                "%sthe learner speaks casi.v1 protocol %d.%d, this client %d.%d; only what "
                "both offer is used (Act stream: %s)",
                self.prefix, reply.protocol_version, reply.protocol_minor, PROTOCOL_VERSION,
                PROTOCOL_MINOR, "yes" if reply.act_stream else "no, unary Predict",
            )  # fmt: skip

    def init_hidden(self, batch: int) -> None:
        self._call("InitHidden", net_pb2.HiddenCfg(batch=batch))

    def predict(self, obs: np.ndarray) -> Prediction:
        return self.predict_async(obs).result()

    def predict_async(self, obs: np.ndarray) -> PendingPredict:
        """Sends Predict(``obs``) and returns at once; ``.result()`` waits for the reply."""
        request = self._encode("Predict", lambda: codec.observations_to_proto(obs))
        return PendingPredict(self, obs, request)

    @property
    def streaming(self) -> bool:
        """Whether Predict goes over the Act stream."""
        return self.use_stream and self.act_stream

    def _open_stream(self) -> ActStream:
        with self._stream_lock:
            if self._stream is None or self._stream.broken:
                self._stream = ActStream(self._stub, self._metadata, self.timeout)
            return self._stream

    def _drop_stream(self) -> None:
        with self._stream_lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def _reply(self, obs: np.ndarray, reply: net_pb2.Predictions) -> Prediction:
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
        self._drop_stream()
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


class PendingPredict:
    """A Predict in flight: on the client's Act stream, or a unary call's future."""

    def __init__(self, client: NetClient, obs: np.ndarray, request: net_pb2.Observations) -> None:
        self.client, self.obs, self.request = client, obs, request
        self._attempt = 1
        self._start()

    def _start(self) -> None:
        c = self.client
        self._stream: ActStream | None = None
        self._future: Any = None
        try:
            if c.streaming:
                self._stream = c._open_stream()
                self._ticket = self._stream.send(self.request)
            else:
                self._future = c._stub.Predict.future(
                    self.request, timeout=c.timeout, metadata=c._metadata
                )
        except StreamFailed as exc:  # the stream broke before this request left
            self._early: StreamFailed | None = exc
        else:
            self._early = None

    def _wait(self) -> net_pb2.Predictions:
        if self._early is not None:
            raise self._early
        if self._stream is not None:
            return self._stream.receive(self._ticket)
        try:
            return self._future.result()  # type: ignore[no-any-return]
        except grpc.RpcError as exc:
            raise StreamFailed(exc.code(), exc.details() or "") from None  # type: ignore[attr-defined]

    def result(self) -> Prediction:
        """(logits, values); retried on UNAVAILABLE like unary Predict, on a new stream."""
        c = self.client
        attempts = 1 + c.retries
        while True:
            try:
                reply = self._wait()
                break
            except StreamFailed as exc:
                if exc.code != grpc.StatusCode.UNAVAILABLE or self._attempt >= attempts:
                    raise c._failure(
                        "Predict", exc.code, exc.details, c.timeout, self._attempt
                    ) from None
                time.sleep(c.retry_backoff * 2 ** (self._attempt - 1))
                self._attempt += 1
                self._start()
        return c._reply(self.obs, reply)
