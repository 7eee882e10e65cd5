"""Contract tests of what surrounds Net: the health service, reflection and the token."""

from __future__ import annotations

from functools import partial
from typing import Any

import grpc
import pytest
from casi.v1 import net_pb2
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from casi_proto.client import NetClient
from casi_proto.compliance.base import (
    ContractBase,
    Endpoint,
    Metadata,
    call_raw,
    expect_error,
    fresh_server,
)
from casi_proto.errors import UNAUTHENTICATED

NET = net_pb2.DESCRIPTOR.services_by_name["Net"]


STREAMS = ("Act",)  # rpcs of a minor version above 0, which a server may lack


def every_net_call(streams: bool = True) -> list[tuple[str, Any]]:
    """(method, an empty request) for every rpc of the Net service (without ``STREAMS``
    unless ``streams``)."""
    return [
        (m.name, getattr(net_pb2, m.input_type.name)())
        for m in NET.methods
        if streams or m.name not in STREAMS
    ]


def reflect(
    channel: grpc.Channel, request: reflection_pb2.ServerReflectionRequest, metadata: Metadata
) -> reflection_pb2.ServerReflectionResponse:
    """One question to the server reflection service."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([request]), timeout=30.0, metadata=metadata or None)
    return next(iter(replies))


class ServiceContract(ContractBase):
    """grpc_health_probe and grpcurl work; a token, if the server has one, is required."""

    @pytest.fixture
    def token(self, endpoint: Endpoint) -> str:
        if not endpoint.token:
            pytest.skip("the server under test was started without a token")
        return endpoint.token

    @pytest.fixture
    def calls(self, client: NetClient) -> list[tuple[str, Any]]:
        """Every rpc the server offers, with an empty request (Act if its InitReply says)."""
        return every_net_call(streams=client.init(self.make_cfg()).act_stream)

    @fresh_server
    def test_health_is_serving_and_needs_no_token(self, channel: grpc.Channel) -> None:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", NET.full_name):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30.0)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, repr(service)

    @fresh_server
    def test_reflection_lists_and_describes_the_net_service(
        self, channel: grpc.Channel, endpoint: Endpoint
    ) -> None:
        ask = reflection_pb2.ServerReflectionRequest
        listed = reflect(channel, ask(list_services=""), endpoint.metadata())
        names = {s.name for s in listed.list_services_response.service}
        assert NET.full_name in names, sorted(names)
        found = reflect(channel, ask(file_containing_symbol=NET.full_name), endpoint.metadata())
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(data)
            for data in found.file_descriptor_response.file_descriptor_proto
        ]
        methods = {
            f"{f.package}.{s.name}": [m.name for m in s.method] for f in files for s in f.service
        }
        every = [m.name for m in NET.methods]
        unary = [name for name in every if name not in STREAMS]
        assert methods.get(NET.full_name) in (every, unary), methods

    def test_calls_without_the_token_are_unauthenticated(
        self, channel: grpc.Channel, token: str, calls: list[tuple[str, Any]]
    ) -> None:
        for method, request in calls:
            err = expect_error(UNAUTHENTICATED, partial(call_raw, channel, method, request))
            assert err.message, f"{method}: UNAUTHENTICATED without a sentence"

    def test_calls_with_a_wrong_token_are_unauthenticated(
        self, channel: grpc.Channel, token: str, calls: list[tuple[str, Any]]
    ) -> None:
        wrong = (f"Bearer {token}x", f"Bearer {token[:-1]}", token)  # the last lacks "Bearer "
        for value in wrong:
            metadata = (("authorization", value),)
            for method, request in calls:
                call = partial(call_raw, channel, method, request, metadata)
                err = expect_error(UNAUTHENTICATED, call)
                assert err.message, f"{method} with {value!r}: UNAUTHENTICATED without a sentence"
