"""Probe a Net server's standard gRPC health service: ``python -m casi_proto.health HOST:PORT``.

Exit status 0 when the server answers SERVING, 1 otherwise: made for container health checks,
where a separate probe binary is one more thing to ship.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from casi_proto.tls import channel_credentials


def probe(address: str, *, timeout: float = 3.0, root_cert: Path | None = None) -> str:
    """The health status name of the server at ``address`` (e.g. ``SERVING``)."""
    if root_cert is None:
        channel = grpc.insecure_channel(address)
    else:
        channel = grpc.secure_channel(address, channel_credentials(root_cert))
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m casi_proto.health", description=__doc__)
    parser.add_argument("address", help="HOST:PORT of the server")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    parser.add_argument("--tls-ca", type=Path, help="CA certificate, for a TLS server")
    args = parser.parse_args(argv)
    try:
        status = probe(args.address, timeout=args.timeout, root_cert=args.tls_ca)
    except grpc.RpcError as err:
        print(f"{args.address}: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    print(f"{args.address}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
