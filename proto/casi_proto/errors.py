"""One exception type for every contract error, whichever side raises it.

Codes are the names of gRPC status codes (``"INVALID_ARGUMENT"``...), kept as
plain strings so that model code can raise them without importing grpc.
"""

from __future__ import annotations

INVALID_ARGUMENT = "INVALID_ARGUMENT"
FAILED_PRECONDITION = "FAILED_PRECONDITION"
UNAUTHENTICATED = "UNAUTHENTICATED"
UNAVAILABLE = "UNAVAILABLE"
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
INTERNAL = "INTERNAL"


class NetError(Exception):
    """A Net call failed; ``code`` is a gRPC status code name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def invalid(message: str) -> NetError:
    return NetError(INVALID_ARGUMENT, message)


def precondition(message: str) -> NetError:
    return NetError(FAILED_PRECONDITION, message)
