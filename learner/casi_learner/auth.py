"""Bearer-token check for every Net call (health checks are exempt).

The check reads only the call's metadata, and a refused call is answered by a handler that
takes its request as a stream it never reads: grpc then does not receive the message (it
would receive a unary request in full, up to the message limit, before any handler runs),
so an unauthenticated caller costs the learner no more memory than its metadata.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

HEALTH_PREFIX = "/grpc.health.v1.Health/"


def _refuse(message: str) -> Callable[[Any, grpc.ServicerContext], Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return handler


def _refusal(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler that refuses without reading the request (a stream it never iterates)."""
    refuse = _refuse(message)
    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    return grpc.stream_unary_rpc_method_handler(refuse)


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses calls whose ``authorization`` metadata is not ``Bearer <token>``."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("an empty token would let everyone in; pass a non-empty token")
        self._expected = f"Bearer {token}".encode()

    def check(self, metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
        """None if the metadata carries the token, else the reason for refusing."""
        values = [v for k, v in metadata or () if k == "authorization"]
        if not values:
            return (
                "this learner requires a token: send metadata 'authorization: Bearer <token>' "
                "(the token the learner was started with, --token or CASI_TOKEN)"
            )
        got = values[0] if isinstance(values[0], bytes) else values[0].encode()
        if not got.startswith(b"Bearer "):
            return "the authorization metadata must read 'Bearer <token>'"
        if not hmac.compare_digest(got, self._expected):
            return "the bearer token does not match the token this learner was started with"
        return None

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        reason = self.check(handler_call_details.invocation_metadata)
        return handler if reason is None else _refusal(handler, reason)
