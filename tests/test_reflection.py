"""Server reflection answers under grpc.reflection.v1 (grpcurl's and Postman's first choice) and v1alpha."""

from __future__ import annotations

from typing import TypeAlias

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from tests.conftest import RunningGateway

# The v1 and v1alpha messages are the same fields and numbers: a raw v1 client can use the v1alpha classes.
# (grpcio-reflection ships .pyi files but no py.typed, so to mypy these are Any: the aliases say so explicitly.)
Request: TypeAlias = reflection_pb2.ServerReflectionRequest
Response: TypeAlias = reflection_pb2.ServerReflectionResponse


async def ask(channel: grpc.aio.Channel, version: str, request: Request) -> Response:
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=Request.SerializeToString,
        response_deserializer=Response.FromString,
    )
    responses = call(iter([request]), timeout=10)
    answers = [answer async for answer in responses]
    assert len(answers) == 1
    return answers[0]


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection_lists_the_services(gateway: RunningGateway, version: str) -> None:
    answer = await ask(gateway.channel, version, Request(list_services=""))
    names = {service.name for service in answer.list_services_response.service}
    assert {
        "integration_api.UnifiedProviderService",
        "integration_api.OpenAiService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names


async def test_reflection_v1_describes_a_service(gateway: RunningGateway) -> None:
    answer = await ask(gateway.channel, "v1", Request(file_containing_symbol="integration_api.UnifiedProviderService"))
    [first, *_] = answer.file_descriptor_response.file_descriptor_proto
    file = descriptor_pb2.FileDescriptorProto.FromString(first)
    assert "UnifiedProviderService" in {service.name for service in file.service}


async def test_reflection_v1_describes_itself(gateway: RunningGateway) -> None:
    answer = await ask(gateway.channel, "v1", Request(file_containing_symbol="grpc.reflection.v1.ServerReflection"))
    [raw] = answer.file_descriptor_response.file_descriptor_proto
    file = descriptor_pb2.FileDescriptorProto.FromString(raw)
    assert (file.name, file.package) == ("grpc/reflection/v1/reflection.proto", "grpc.reflection.v1")
    [method] = file.service[0].method
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
