"""Every RPC kind through the gRPC-JSON bridge, with a small test service built at test time.

The protocol's own services have only unary and bidirectional methods, so `bridgetest.Counter` (a
FileDescriptorProto made here, in a private descriptor pool) adds server streaming (`Count`, yielded; `CountWritten`,
written with `context.write`), client streaming (`Sum`, which authenticates with the real gateway from the
socket's metadata), bidirectional streaming as an async generator (`Echo`) and a unary method ending with
`set_code` (`Fail`). Its handlers are plain `grpc.*_rpc_method_handler`s, given to the bridge as an extra service
next to the gateway's own table.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import ServiceDescriptor
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from integration_api.errors import GatewayError
from integration_api.gateway import Gateway
from integration_api.http.bridge import BridgeServices
from integration_api.status import rich_status
from tests.conftest import RunningGateway
from tests.http.bridge_server import Bridge, serve_bridge

Field = descriptor_pb2.FieldDescriptorProto
SERVICE = "bridgetest.Counter"


def _counter_file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="bridgetest/counter.proto", package="bridgetest", syntax="proto3")
    for name, fields in [
        ("CountRequest", [("up_to", Field.TYPE_INT32), ("fail_at", Field.TYPE_INT32), ("delay_ms", Field.TYPE_INT32)]),
        ("Number", [("value", Field.TYPE_INT32)]),
        ("Total", [("sum", Field.TYPE_INT32), ("count", Field.TYPE_INT32), ("project", Field.TYPE_STRING)]),
    ]:
        message = file.message_type.add(name=name)
        for number, (field_name, field_type) in enumerate(fields, start=1):
            message.field.add(name=field_name, number=number, type=field_type, label=Field.LABEL_OPTIONAL)
    service = file.service.add(name="Counter")
    for name, request, response, client_streaming, server_streaming in [
        ("Count", "CountRequest", "Number", False, True),
        ("CountWritten", "CountRequest", "Number", False, True),
        ("Sum", "Number", "Total", True, False),
        ("Echo", "Number", "Number", True, True),
        ("Fail", "Number", "Number", False, False),
    ]:
        service.method.add(
            name=name,
            input_type=f".bridgetest.{request}",
            output_type=f".bridgetest.{response}",
            client_streaming=client_streaming,
            server_streaming=server_streaming,
        )
    return file


POOL = descriptor_pool.DescriptorPool()
POOL.Add(_counter_file())
COUNTER: ServiceDescriptor = POOL.FindServiceByName(SERVICE)
CountRequest = message_factory.GetMessageClass(POOL.FindMessageTypeByName("bridgetest.CountRequest"))
Number = message_factory.GetMessageClass(POOL.FindMessageTypeByName("bridgetest.Number"))
Total = message_factory.GetMessageClass(POOL.FindMessageTypeByName("bridgetest.Total"))


class CounterServicer:
    """The test service; `cancelled` records the calls whose client went away."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.cancelled: list[str] = []
        self.changed = asyncio.Event()

    async def _numbers(self, request: Any, context: Any) -> AsyncIterator[Any]:
        if request.up_to < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "up_to must not be negative")
        try:
            for value in range(1, request.up_to + 1):
                if value == request.fail_at:
                    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"failed at {value}")
                if request.delay_ms:
                    await asyncio.sleep(request.delay_ms / 1000)
                yield Number(value=value)
        except asyncio.CancelledError:
            self.cancelled.append("Count")
            self.changed.set()
            raise

    def Count(self, request: Any, context: Any) -> AsyncIterator[Any]:
        return self._numbers(request, context)

    async def CountWritten(self, request: Any, context: Any) -> None:
        async for number in self._numbers(request, context):
            await context.write(number)

    async def Sum(self, requests: AsyncIterator[Any], context: Any) -> Any:
        try:
            stream = await self.gateway.authenticate(context.invocation_metadata(), context.peer(), None)
        except GatewayError as error:
            await context.abort_with_status(rich_status(error))
        values = [number.value async for number in requests]
        return Total(sum=sum(values), count=len(values), project=stream.principal.project_id)

    async def Echo(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for number in requests:
            yield Number(value=number.value * 2)

    async def Fail(self, request: Any, context: Any) -> Any:
        context.set_code(grpc.StatusCode.NOT_FOUND)
        context.set_details(f"no number {request.value}")
        return Number()


def counter_service(servicer: CounterServicer) -> BridgeServices:
    def serialize(message: Any) -> bytes:
        return bytes(message.SerializeToString())

    handlers = {
        "Count": grpc.unary_stream_rpc_method_handler(servicer.Count, CountRequest.FromString, serialize),
        "CountWritten": grpc.unary_stream_rpc_method_handler(servicer.CountWritten, CountRequest.FromString, serialize),
        "Sum": grpc.stream_unary_rpc_method_handler(servicer.Sum, Number.FromString, serialize),
        "Echo": grpc.stream_stream_rpc_method_handler(servicer.Echo, Number.FromString, serialize),
        "Fail": grpc.unary_unary_rpc_method_handler(servicer.Fail, Number.FromString, serialize),
    }
    return {SERVICE: (COUNTER, handlers)}


@pytest.fixture
def servicer(gateway: RunningGateway) -> CounterServicer:
    return CounterServicer(gateway.server.gateway)


@pytest.fixture
async def bridge(gateway: RunningGateway, servicer: CounterServicer) -> AsyncIterator[Bridge]:
    async with serve_bridge(gateway, counter_service(servicer)) as running:
        yield running


@pytest.fixture
async def http(bridge: Bridge) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=bridge.http, timeout=10) as client:
        yield client


async def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event name, JSON data) of every SSE event of `response`."""
    events, name = [], "message"
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, json.loads(line.removeprefix("data: "))))
            name = "message"
    return events


# --- server streaming: POST -> SSE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["Count", "CountWritten"])
async def test_server_streaming_is_sse_then_status(http: httpx.AsyncClient, method: str) -> None:
    async with http.stream("POST", f"/{SERVICE}/{method}", json={"upTo": 3}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await sse_events(response)
    assert events == [
        ("message", {"value": 1}),
        ("message", {"value": 2}),
        ("message", {"value": 3}),
        ("status", {"code": "OK", "message": "", "httpStatus": 200}),
    ]


async def test_a_failure_mid_stream_is_the_status_event(http: httpx.AsyncClient) -> None:
    async with http.stream("POST", f"/{SERVICE}/Count", json={"upTo": 5, "failAt": 3}) as response:
        events = await sse_events(response)
    assert events[:2] == [("message", {"value": 1}), ("message", {"value": 2})]
    assert events[2:] == [("status", {"code": "FAILED_PRECONDITION", "message": "failed at 3", "details": [],
                                      "httpStatus": 400})]  # fmt: skip


async def test_a_failure_before_the_first_message_is_an_http_error(http: httpx.AsyncClient) -> None:
    response = await http.post(f"/{SERVICE}/Count", json={"upTo": -1})
    assert response.status_code == 400
    assert response.json() == {"code": "INVALID_ARGUMENT", "message": "up_to must not be negative", "details": []}


async def test_a_deadline_from_grpc_timeout(http: httpx.AsyncClient) -> None:
    response = await http.post(f"/{SERVICE}/Count", json={"upTo": 3, "delayMs": 5000}, headers={"grpc-timeout": "50m"})
    assert (response.status_code, response.json()["code"]) == (504, "DEADLINE_EXCEEDED")


async def test_a_client_gone_mid_sse_cancels_the_handler(http: httpx.AsyncClient, servicer: CounterServicer) -> None:
    async with http.stream("POST", f"/{SERVICE}/Count", json={"upTo": 100, "delayMs": 100}) as response:
        lines = response.aiter_lines()
        assert (await anext(lines)).startswith("data: ")
    async with asyncio.timeout(5):
        while "Count" not in servicer.cancelled:
            servicer.changed.clear()
            await servicer.changed.wait()


async def test_unary_set_code_is_the_error(http: httpx.AsyncClient) -> None:
    response = await http.post(f"/{SERVICE}/Fail", json={"value": 7})
    assert (response.status_code, response.json()["message"]) == (404, "no number 7")


# --- client streaming and bidi: WebSocket --------------------------------------------------------------------------


async def receive(socket: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(10):
        document = json.loads(await socket.recv())
    assert isinstance(document, dict)
    return document


async def test_client_streaming_over_a_websocket(bridge: Bridge, gateway: RunningGateway) -> None:
    headers = {"x-api-key": gateway.api_key}
    async with connect(f"{bridge.ws}/{SERVICE}/Sum", additional_headers=headers, open_timeout=10) as socket:
        for value in (1, 2):
            await socket.send(json.dumps({"value": value}))
        await socket.send('{"value": ')  # a malformed one: answered, skipped, the stream goes on
        assert (await receive(socket))["$error"]["code"] == "INVALID_ARGUMENT"
        await socket.send(json.dumps({"value": 3}))
        await socket.send(json.dumps({"$end": True}))
        assert await receive(socket) == {"sum": 6, "count": 3, "project": "proj-1"}
        assert await receive(socket) == {"$status": {"code": "OK", "message": "", "httpStatus": 200}}
        with pytest.raises(ConnectionClosed):
            await socket.recv()
    assert socket.close_code == 1000


async def test_client_streaming_refused_by_the_handler(bridge: Bridge) -> None:
    async with connect(f"{bridge.ws}/{SERVICE}/Sum", open_timeout=10) as socket:
        await socket.send(json.dumps({"$auth": {"x-api-key": "ia_bad_key"}}))
        status = (await receive(socket))["$status"]
        with pytest.raises(ConnectionClosed):
            await socket.recv()
    assert (status["code"], status["httpStatus"], socket.close_code) == ("UNAUTHENTICATED", 401, 1008)


async def test_bidi_async_generator_over_a_websocket(bridge: Bridge) -> None:
    async with connect(f"{bridge.ws}/{SERVICE}/Echo", open_timeout=10) as socket:
        for value in (1, 5, 21):  # each answer arrives before the next request is sent: it streams both ways
            await socket.send(json.dumps({"value": value}))
            assert await receive(socket) == {"value": value * 2}
        await socket.send(json.dumps({"$end": True}))
        assert (await receive(socket))["$status"]["code"] == "OK"
