"""Authentication happens once per stream, from metadata, before any request is read."""

from __future__ import annotations

import time

import grpc
import jwt
import pytest

from auth import issue_service_token
from tests.conftest import JWT_SECRET, RunningGateway, make_settings, start_gateway
from tests.grpc_helpers import chat_request


async def _refused(gateway: RunningGateway, metadata: tuple[tuple[str, str], ...]) -> grpc.aio.AioRpcError:
    stream = gateway.open_stream(metadata)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.send(chat_request("r", provider="probe"))
        await stream.read_to_end()
    return caught.value


async def test_stream_without_credentials_is_rejected_before_reading(gateway: RunningGateway) -> None:
    error = await _refused(gateway, ())
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "x-api-key" in (error.details() or "")
    assert gateway.probe.started == []


async def test_unknown_and_revoked_keys_are_rejected(gateway: RunningGateway) -> None:
    assert (await _refused(gateway, (("x-api-key", "ia_nope_nope"),))).code() == grpc.StatusCode.UNAUTHENTICATED
    key, record = gateway.store.create(name="soon revoked", organization_id="o", project_id="p")
    stream = gateway.open_stream((("x-api-key", key),))
    await stream.send(chat_request("before", "ok", provider="probe"))
    assert (await stream.read_until_done(["before"])).terminal("before").success
    assert gateway.store.revoke(record.key_id)
    error = await _refused(gateway, (("x-api-key", key),))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and key not in (error.details() or "")


async def test_service_jwt_valid_expired_and_forged(gateway: RunningGateway) -> None:
    token = issue_service_token(JWT_SECRET, organization_id="org", project_id="proj")
    stream = gateway.open_stream((("x-internal-service-key", token),))
    await stream.send(chat_request("jwt", "hello", provider="probe"))
    assert (await stream.read_until_done(["jwt"])).terminal("jwt").success

    expired = jwt.encode({"organizationId": "o", "projectId": "p", "exp": int(time.time()) - 600}, JWT_SECRET, "HS256")
    assert (await _refused(gateway, (("x-internal-service-key", expired),))).code() == grpc.StatusCode.UNAUTHENTICATED
    forged = jwt.encode(
        {"organizationId": "o", "projectId": "p", "exp": int(time.time()) + 600},
        "wrong-secret-but-long-enough-too",
        "HS256",
    )
    assert (await _refused(gateway, (("x-internal-service-key", forged),))).code() == grpc.StatusCode.UNAUTHENTICATED
    assert gateway.probe.started == ["jwt"]


async def test_unary_rpcs_are_authenticated_too(gateway: RunningGateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.unified.Chat(chat_request("u", provider="probe"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_auth_disabled_only_by_explicit_setting(tmp_path: object, caplog: pytest.LogCaptureFixture) -> None:
    running = await start_gateway(make_settings(tmp_path, auth_disabled=True))  # type: ignore[arg-type]
    try:
        assert any("AUTHENTICATION IS DISABLED" in record.getMessage() for record in caplog.records)
        stream = running.open_stream(())
        await stream.send(chat_request("anon", "no key needed", provider="probe"))
        assert (await stream.read_until_done(["anon"])).terminal("anon").success
    finally:
        await running.channel.close()
        await running.server.stop()
