"""Certificates for gRPC: PEM files or bytes, read in one place."""

from __future__ import annotations

from pathlib import Path

import grpc

PemSource = str | Path | bytes | None


def read_pem(source: PemSource) -> bytes | None:
    """The bytes of a PEM given as a path or as bytes; None stays None."""
    if source is None or isinstance(source, bytes):
        return source
    return Path(source).read_bytes()


def channel_credentials(
    root_cert: PemSource = None, client_cert: PemSource = None, client_key: PemSource = None
) -> grpc.ChannelCredentials:
    """TLS credentials trusting ``root_cert`` (None: the system's roots); a client certificate
    and its key add mutual TLS."""
    if (client_cert is None) != (client_key is None):
        raise ValueError("a client certificate needs its key (client_cert and client_key)")
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(root_cert),
        private_key=read_pem(client_key),
        certificate_chain=read_pem(client_cert),
    )
