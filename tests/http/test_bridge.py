"""The gRPC-JSON bridge for the protocol's own services, through a real gateway and a real HTTP server.

Unary RPCs over POST (JSON in the protobuf JSON mapping), their errors as HTTP statuses, and StreamChat over one
WebSocket (httpx and the `websockets` package as clients): concurrent requests with one failing, `$end` and
`$status`, a malformed message answered with `$error` on a socket that stays usable, the ways to authenticate, and
a socket closed mid-request cancelling the upstream call (seen by the probe provider).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from integration_api.gateway import PROTOCOL_REVISION
from integration_api.settings import Settings
from tests.conftest import RunningGateway, make_settings
from tests.grpc_helpers import chat_request
from tests.http.bridge_server import UNIFIED, Bridge, serve_bridge

PROBE = "probe"
SUBPROTOCOL_PREFIX = "integration-api.bearer."


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return make_settings(tmp_path, max_message_bytes=64 * 1024)  # small, so the 413 test sends little


@pytest.fixture
async def bridge(gateway: RunningGateway) -> AsyncIterator[Bridge]:
    async with serve_bridge(gateway) as running:
        yield running


@pytest.fixture
async def http(bridge: Bridge) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=bridge.http, timeout=10) as client:
        yield client


def chat_json(request_id: str, text: str = "hello there world", **params: Any) -> dict[str, Any]:
    """A ChatRequest in the protobuf JSON mapping, for StreamChat on the socket."""
    return json_format.MessageToDict(chat_request(request_id, text, **params))


# --- unary RPCs over POST ------------------------------------------------------------------------------------------


async def test_unary_chat_over_post(http: httpx.AsyncClient, gateway: RunningGateway) -> None:
    # Written by hand, as a curl user would: camelCase names, a model parameter as a packed google.protobuf.Value.
    body = {
        "requestId": "p1",
        "providerName": "simulated",
        "credential": {"id": 1, "value": {"key": "k"}},
        "conversations": [{"role": "user", "user": {"content": "bridged unary chat"}}],
        "modelParameters": {"model.name": {"@type": "type.googleapis.com/google.protobuf.Value", "value": "echo"}},
    }
    response = await http.post(f"{UNIFIED}/Chat", json=body, headers={"x-api-key": gateway.api_key})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert answer["requestId"] == "p1" and answer["success"] is True and answer["final"] is True
    assert "".join(answer["data"]["assistant"]["contents"]) == "bridged unary chat"
    assert answer["usage"]["outputTokens"] == "3"  # int64 is a JSON string in the protobuf JSON mapping


async def test_embedding_and_get_version_over_post(http: httpx.AsyncClient, gateway: RunningGateway) -> None:
    bearer = {"authorization": f"Bearer {gateway.api_key}"}  # what the OpenAI SDKs send
    embedding = {"providerName": "simulated", "credential": {"value": {"key": "k"}}, "content": {"0": "a", "1": "b"}}
    response = await http.post(f"{UNIFIED}/Embedding", json=embedding, headers=bearer)
    assert response.status_code == 200, response.text
    vectors = response.json()["data"]
    assert len(vectors) == 2 and all(vector["embedding"] for vector in vectors)

    version = await http.post(f"{UNIFIED}/GetVersion", content=b"", headers=bearer)  # empty body: empty message
    assert version.status_code == 200, version.text
    assert version.json()["protocolRevision"] == PROTOCOL_REVISION
    assert PROBE in {provider["name"] for provider in version.json()["providers"]}
    # The per-provider services are bridged with exactly the methods the gRPC server registers for them.
    assert (await http.get("/integration_api.OpenAiService/Chat")).status_code == 405  # there: POST it
    assert (await http.post("/integration_api.OpenAiService/GetVersion", json={})).status_code == 404  # not declared


async def test_missing_auth_is_401_with_the_google_rpc_details(http: httpx.AsyncClient) -> None:
    response = await http.post(f"{UNIFIED}/GetVersion", json={})
    assert response.status_code == 401
    error = response.json()
    assert error["code"] == "UNAUTHENTICATED" and error["message"]
    (info,) = [d for d in error["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert info["reason"] == "UNAUTHENTICATED" and info["metadata"]["http_status"] == "401"


@pytest.mark.parametrize(
    ("simulated_error", "status", "code"),
    [(400, 400, "INVALID_ARGUMENT"), (403, 403, "PERMISSION_DENIED"), (429, 429, "RESOURCE_EXHAUSTED"),
     (503, 503, "UNAVAILABLE"), (504, 504, "DEADLINE_EXCEEDED")],
)  # fmt: skip
async def test_provider_errors_keep_their_http_status(
    http: httpx.AsyncClient, gateway: RunningGateway, simulated_error: int, status: int, code: str
) -> None:
    body = json_format.MessageToDict(chat_request("e", provider="simulated", simulated_error=simulated_error))
    response = await http.post(f"{UNIFIED}/Chat", json=body, headers={"x-api-key": gateway.api_key})
    assert (response.status_code, response.json()["code"]) == (status, code)


async def test_bad_requests_each_get_their_status(http: httpx.AsyncClient, gateway: RunningGateway) -> None:
    auth = {"x-api-key": gateway.api_key, "content-type": "application/json"}
    cases = [
        (await http.post(f"{UNIFIED}/Chat", content=b"{not json", headers=auth), 400, "INVALID_ARGUMENT"),
        (await http.post(f"{UNIFIED}/Chat", json={"noSuchField": 1}, headers=auth), 400, "INVALID_ARGUMENT"),
        (await http.post(f"{UNIFIED}/Chat", json=[1, 2], headers=auth), 400, "INVALID_ARGUMENT"),
        (await http.post(f"{UNIFIED}/NoSuchMethod", json={}, headers=auth), 404, "UNIMPLEMENTED"),
        (await http.post("/integration_api.NoSuchService/Chat", json={}, headers=auth), 404, "UNIMPLEMENTED"),
        (await http.post(f"{UNIFIED}/Chat", content=b" " * (64 * 1024 + 1), headers=auth), 413, "INVALID_ARGUMENT"),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["code"]) == (status, code), response.text


async def test_oversized_chunked_body_is_413(http: httpx.AsyncClient, gateway: RunningGateway) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused as it grows
        for _ in range(20):
            yield b" " * 8192

    response = await http.post(f"{UNIFIED}/Chat", content=chunks(), headers={"x-api-key": gateway.api_key})
    assert response.status_code == 413
    # Declared, and three times the limit: the rest is read and dropped, so the client gets the 413, not a reset.
    response = await http.post(f"{UNIFIED}/Chat", content=b" " * (3 * 64 * 1024), headers={"x-api-key": "k"})
    assert response.status_code == 413 and response.json()["code"] == "INVALID_ARGUMENT"


async def test_a_browser_get_is_405_with_a_hint(http: httpx.AsyncClient) -> None:
    unary = await http.get(f"{UNIFIED}/Chat", headers={"accept": "text/html"})
    assert unary.status_code == 405 and unary.headers["allow"] == "POST"
    assert "POST a JSON integration_api.ChatRequest" in unary.json()["message"]
    bidi = await http.get(f"{UNIFIED}/StreamChat")
    assert bidi.status_code == 405 and "WebSocket" in bidi.json()["message"]
    posted = await http.post(f"{UNIFIED}/StreamChat", json={})
    assert posted.status_code == 405 and "WebSocket" in posted.json()["message"]


async def test_a_client_gone_mid_unary_call_cancels_the_upstream(bridge: Bridge, gateway: RunningGateway) -> None:
    body = json_format.MessageToDict(chat_request("gone", "a b c d e f g h", provider=PROBE, simulated_delay_ms=500))
    async with httpx.AsyncClient(base_url=bridge.http) as client:
        call = asyncio.ensure_future(client.post(f"{UNIFIED}/Chat", json=body, headers={"x-api-key": gateway.api_key}))
        await gateway.probe.wait_for(lambda: "gone" in gateway.probe.started)
        call.cancel()  # closes the connection under the request
        await asyncio.gather(call, return_exceptions=True)
    await gateway.probe.wait_for(lambda: "gone" in gateway.probe.closed)
    assert "gone" not in gateway.probe.finished


# --- StreamChat over a WebSocket -----------------------------------------------------------------------------------


async def receive(socket: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(10):
        message = await socket.recv()
    document = json.loads(message)
    assert isinstance(document, dict)
    return document


async def read_until_status(socket: ClientConnection) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every message up to `$status`, and the status."""
    messages = []
    while "$status" not in (document := await receive(socket)):
        messages.append(document)
    return messages, document["$status"]


def stream_chat(bridge: Bridge, **kwargs: Any) -> Any:
    return connect(f"{bridge.ws}{UNIFIED}/StreamChat", open_timeout=10, **kwargs)


async def test_five_concurrent_stream_chats_on_one_socket(bridge: Bridge, gateway: RunningGateway) -> None:
    ids = [f"ws-{n}" for n in range(5)]
    async with stream_chat(bridge, additional_headers={"x-api-key": gateway.api_key}) as socket:
        for request_id in ids:
            failing = request_id == "ws-2"
            params: dict[str, Any] = {"simulated_error": 400, "simulated_error_after": 1} if failing else {}
            await socket.send(json.dumps(chat_json(request_id, f"reply of {request_id}", provider=PROBE, **params)))
        await gateway.probe.wait_for(lambda: len(gateway.probe.started) == 5)  # all five running at once
        await socket.send(json.dumps({"$end": True}))
        frames, status = await read_until_status(socket)
        with pytest.raises(ConnectionClosed):
            await socket.recv()
        assert socket.close_code == 1000
    assert status == {"code": "OK", "message": "", "httpStatus": 200}
    for request_id in ids:
        mine = [frame for frame in frames if frame["requestId"] == request_id]
        terminals = [frame for frame in mine if frame.get("final")]
        assert len(terminals) == 1 and mine[-1] is terminals[0], request_id
        if request_id == "ws-2":
            assert terminals[0].get("success", False) is False and terminals[0]["code"] == 400
            assert terminals[0]["error"]["status"] == "INVALID_ARGUMENT"
        else:
            assert terminals[0]["success"] is True
            assert "".join(terminals[0]["data"]["assistant"]["contents"]) == f"reply of {request_id}"
            deltas = "".join("".join(f["data"]["assistant"]["contents"]) for f in mine if not f.get("final"))
            assert deltas == f"reply of {request_id}"


async def test_a_malformed_message_gets_error_and_the_socket_stays_usable(
    bridge: Bridge, gateway: RunningGateway
) -> None:
    async with stream_chat(bridge, additional_headers={"x-api-key": gateway.api_key}) as socket:
        await socket.send("{this is not json")
        error = await receive(socket)
        assert error["$error"]["code"] == "INVALID_ARGUMENT"
        await socket.send(json.dumps({"requestId": "x", "notAField": 1}))  # JSON, but not a ChatRequest
        assert (await receive(socket))["$error"]["code"] == "INVALID_ARGUMENT"
        await socket.send(json.dumps(chat_json("after", "still here", provider="simulated")))
        await socket.send(json.dumps({"$end": True}))
        frames, status = await read_until_status(socket)
    assert status["code"] == "OK"
    assert [f["success"] for f in frames if f.get("final")] == [True]
    assert "".join(frames[-1]["data"]["assistant"]["contents"]) == "still here"


async def one_reply(socket: ClientConnection, text: str) -> tuple[str, dict[str, Any]]:
    await socket.send(json.dumps(chat_json("r", text, provider="simulated")))
    await socket.send(json.dumps({"$end": True}))
    frames, status = await read_until_status(socket)
    final = [frame for frame in frames if frame.get("final")]
    return ("".join(final[0]["data"]["assistant"]["contents"]) if final else ""), status


async def test_auth_by_first_message_subprotocol_or_bearer(bridge: Bridge, gateway: RunningGateway) -> None:
    async with stream_chat(bridge) as socket:  # what a browser does: no headers, the key as the first message
        await socket.send(json.dumps({"$auth": {"x-api-key": gateway.api_key}}))
        assert await one_reply(socket, "first message") == (
            "first message",
            {"code": "OK", "message": "", "httpStatus": 200},
        )

    async with stream_chat(bridge) as socket:
        await socket.send(json.dumps({"$auth": {"authorization": f"Bearer {gateway.api_key}"}}))
        assert (await one_reply(socket, "bearer in auth"))[0] == "bearer in auth"

    offered = ["chat.v1", SUBPROTOCOL_PREFIX + gateway.api_key]
    async with stream_chat(bridge, subprotocols=offered) as socket:
        assert socket.subprotocol == offered[1]  # the server echoes the one it accepted
        assert (await one_reply(socket, "by subprotocol"))[0] == "by subprotocol"

    async with stream_chat(bridge, additional_headers={"authorization": f"Bearer {gateway.api_key}"}) as socket:
        assert (await one_reply(socket, "by bearer header"))[0] == "by bearer header"


async def test_refused_credentials_end_the_socket_with_status_and_1008(bridge: Bridge) -> None:
    async with stream_chat(bridge) as socket:
        await socket.send(json.dumps({"$auth": {"x-api-key": "ia_nope_nope"}}))
        frames, status = await read_until_status(socket)
        with pytest.raises(ConnectionClosed):
            await socket.recv()
    assert frames == [] and status["code"] == "UNAUTHENTICATED" and status["httpStatus"] == 401
    assert socket.close_code == 1008

    async with stream_chat(bridge) as socket:  # no credential at all: the first request is refused
        await socket.send(json.dumps(chat_json("r", provider="simulated")))
        _, status = await read_until_status(socket)
    assert status["code"] == "UNAUTHENTICATED"


async def test_a_socket_closed_mid_request_cancels_the_upstream(bridge: Bridge, gateway: RunningGateway) -> None:
    async with stream_chat(bridge, additional_headers={"x-api-key": gateway.api_key}) as socket:
        # 30 s before each word: only the socket's close (no failed write) can end it within the wait below.
        slow = chat_json("slow", "one two three", provider=PROBE, simulated_delay_ms=30_000)
        await socket.send(json.dumps(slow))
        await gateway.probe.wait_for(lambda: "slow" in gateway.probe.started)
    await gateway.probe.wait_for(lambda: "slow" in gateway.probe.closed)
    assert "slow" not in gateway.probe.finished


async def test_a_socket_closed_after_end_still_cancels_the_upstream(bridge: Bridge, gateway: RunningGateway) -> None:
    async with stream_chat(bridge, additional_headers={"x-api-key": gateway.api_key}) as socket:
        slow = chat_json("half", "one two three", provider=PROBE, simulated_delay_ms=30_000)
        await socket.send(json.dumps(slow))
        await socket.send(json.dumps({"$end": True}))  # half-closed: nothing reads the socket any more
        await gateway.probe.wait_for(lambda: "half" in gateway.probe.started)
    await gateway.probe.wait_for(lambda: "half" in gateway.probe.closed)


async def test_websocket_upgrades_that_cannot_work_are_refused(bridge: Bridge, gateway: RunningGateway) -> None:
    from websockets.exceptions import InvalidStatus

    for path, status in [(f"{UNIFIED}/Chat", 405), (f"{UNIFIED}/NoSuchMethod", 404)]:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(f"{bridge.ws}{path}", open_timeout=10):
                pass
        assert caught.value.response.status_code == status


async def test_sigterm_drain_lets_a_socket_finish_its_requests(bridge: Bridge, gateway: RunningGateway) -> None:
    """As on gRPC: draining refuses new requests, lets those in flight finish, then ends the RPC with its status."""
    async with stream_chat(bridge, additional_headers={"x-api-key": gateway.api_key}) as socket:
        await socket.send(
            json.dumps(chat_json("inflight", "one two three four", provider=PROBE, simulated_delay_ms=100))
        )
        await gateway.probe.wait_for(lambda: "inflight" in gateway.probe.started)
        draining = asyncio.ensure_future(gateway.server.drain_and_stop(grace_s=5))
        frames, status = await read_until_status(socket)
        await draining
    final = [frame for frame in frames if frame.get("final")]
    assert len(final) == 1 and final[0]["success"] is True
    assert "".join(final[0]["data"]["assistant"]["contents"]) == "one two three four"
    assert status["code"] == "OK" and socket.close_code == 1000
