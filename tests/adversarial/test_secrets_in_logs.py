"""No secret ever reaches a log line: a run with faults, every logger at DEBUG, every record grepped.

One in-process gateway serves a run that exercises what could leak: API keys refused (a known key id with a wrong
secret, garbage), service tokens refused (wrong signature, expired) and accepted, vendor errors that echo the whole
request (headers included) back into their error body and their in-stream error event (`Fault(echo_request=True)`),
cancelled requests, a stored credential used by reference (whose key the emulator then echoes), unary calls and
VerifyCredential. Every record of every logger (ours, grpc, asyncio, aiohttp, httpx, the SDKs: all at DEBUG) is
formatted the way a handler would (message, arguments, exception chain and traceback) and searched for every
secret the run used: none may appear. The emulators' own records prove each vendor secret did travel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import jwt
import pytest
from google.protobuf import struct_pb2

from auth import issue_service_token
from integration_api.credentials import CredentialCipher, CredentialStore, generate_key
from integration_api.proto import integration_api_pb2 as pb
from integration_api.testing.emulators import Emulator, Fault, Script, emulator_for
from tests.conftest import JWT_SECRET, RunningGateway, make_settings, start_gateway
from tests.grpc_helpers import StreamDriver, cancel_request, chat_request, credential

INLINE_KEY = "sk-INLINECANARY-openai-8c1f0e"
ANTHROPIC_KEY = "sk-ant-INLINECANARY-77d2a9"
STORED_KEY = "sk-STOREDCANARY-openai-41b7c3"
CREDENTIALS_KEY = generate_key()
ECHO_401 = Script(fault=Fault(status=401, message="key rejected", echo_request=True))
ECHO_EVENT = Script(text="a b c d", fault=Fault(error_event_after_chunks=1, message="it broke", echo_request=True))


@pytest.fixture
def every_logger_at_debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """The root and every logger that exists (and those made later, through the root) at DEBUG."""
    caplog.set_level(logging.DEBUG)
    names = [*logging.root.manager.loggerDict, "grpc", "asyncio", "aiohttp", "httpx", "httpcore", "openai", "anthropic"]
    for name in names:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
async def emulators() -> AsyncIterator[dict[str, Emulator]]:
    async with emulator_for("openai") as openai, emulator_for("anthropic") as anthropic:
        yield {"openai": openai, "anthropic": anthropic}


@pytest.fixture
async def gateway(tmp_path: Path, emulators: dict[str, Emulator]) -> AsyncIterator[RunningGateway]:
    store = CredentialStore(tmp_path, CredentialCipher([CREDENTIALS_KEY]))
    store.add("team-openai", "openai", {"key": STORED_KEY, "base_url": emulators["openai"].base_url})
    running = await start_gateway(make_settings(tmp_path, credentials_key=CREDENTIALS_KEY))
    yield running
    await running.channel.close()
    await running.server.stop()


def stored_reference(name: str) -> pb.Credential:
    struct = struct_pb2.Struct()
    struct.update({"credential_ref": name})
    return pb.Credential(value=struct)


def record_text(record: logging.LogRecord) -> str:
    """Everything a handler could print of a record: the formatted line with its traceback, and the raw args."""
    parts = [logging.Formatter("%(name)s %(levelname)s %(message)s").format(record), repr(record.args)]
    error = record.exc_info[1] if record.exc_info else None
    while error is not None:  # each exception of the chain, as repr (a formatter may print its args)
        parts.append(repr(error))
        error = error.__cause__ or error.__context__
    return "\n".join(parts)


async def refused_stream(gateway: RunningGateway, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    stream = gateway.open_stream(metadata)
    await stream.send(chat_request("refused", provider="simulated"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read_to_end()
    return caught.value.code()


async def run_with_faults(gateway: RunningGateway, emulators: dict[str, Emulator]) -> list[str]:
    """The run; returns every secret it used."""
    openai, anthropic = emulators["openai"], emulators["anthropic"]
    key_id, key_secret = gateway.api_key.split("_")[1], gateway.api_key.split("_", 2)[2]
    wrong_secret_key = f"ia_{key_id}_{'W' * 43}"
    good_token = issue_service_token(JWT_SECRET, "org-1", "proj-1", ttl_s=600)
    forged_token = jwt.encode(
        {"organizationId": "org-1", "projectId": "proj-1", "exp": int(time.time()) + 600},
        "not-the-server-secret-but-long-enough-for-hs256",
        algorithm="HS256",
    )
    expired_token = issue_service_token(JWT_SECRET, "org-1", "proj-1", ttl_s=1)
    expired_token = jwt.encode(
        {
            **jwt.decode(expired_token, options={"verify_signature": False}),
            "exp": int(time.time()) - 3600,
            "iat": int(time.time()) - 3700,
        },
        JWT_SECRET,
        algorithm="HS256",
    )

    # Authentication failures, on streams and on unary calls.
    refused: list[tuple[tuple[str, str], ...]] = [
        (("x-api-key", wrong_secret_key),),
        (("x-api-key", "ia_garbage-" + "Z" * 40),),
        (("x-internal-service-key", forged_token),),
        (("x-internal-service-key", expired_token),),
        (("x-api-key", gateway.api_key), ("x-internal-service-key", forged_token)),
    ]
    for metadata in refused:
        assert await refused_stream(gateway, metadata) == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError):
            await gateway.unified.Chat(chat_request("u", provider="simulated"), metadata=metadata)

    # Vendor errors echoing the request, with inline keys, over an API key and over a service token.
    inline_openai = credential(key=INLINE_KEY, base_url=openai.base_url)
    inline_anthropic = credential(key=ANTHROPIC_KEY, base_url=anthropic.base_url)
    accepted: list[tuple[tuple[str, str], ...]] = [gateway.metadata, (("x-internal-service-key", good_token),)]
    for metadata in accepted:
        script(openai, ECHO_401, ECHO_EVENT)  # 401 is not retried; an error after the first token neither
        script(anthropic, ECHO_401, ECHO_EVENT)
        stream = gateway.open_stream(metadata)
        requests = [
            chat_request("o-401", provider="openai", cred=inline_openai, name="gpt-4o-mini"),
            chat_request("a-401", provider="anthropic", cred=inline_anthropic, name="claude-test"),
        ]
        await stream.send(*requests)
        await stream.read_until_done(["o-401", "a-401"], timeout=30)
        await stream.send(chat_request("o-event", provider="openai", cred=inline_openai, name="gpt-4o-mini"))
        await stream.send(chat_request("a-event", provider="anthropic", cred=inline_anthropic, name="claude-test"))
        collected = await stream.read_until_done(["o-event", "a-event"], timeout=30)
        assert not collected.terminal("o-event").success and not collected.terminal("a-event").success
        await stream.call.done_writing()
        await stream.read_to_end()

    # A stored credential by reference: its key echoed back by a failing upstream, on a stream and in unary calls.
    script(openai, ECHO_401)
    with pytest.raises(grpc.aio.AioRpcError):
        await gateway.unified.Chat(
            chat_request("s-401", provider="openai", cred=stored_reference("team-openai"), name="gpt-4o-mini"),
            metadata=gateway.metadata,
        )
    script(openai, ECHO_401)
    verified = await gateway.unified.VerifyCredential(
        pb.VerifyCredentialRequest(providerName="openai", credential=stored_reference("team-openai")),
        metadata=gateway.metadata,
    )
    assert not verified.success
    script(openai, ECHO_EVENT)
    stream = gateway.open_stream()
    await stream.send(
        chat_request("s-event", provider="openai", cred=stored_reference("team-openai"), name="gpt-4o-mini")
    )
    assert not (await stream.read_until_done(["s-event"], timeout=30)).terminal("s-event").success

    # Cancelled requests: one by CANCEL, then a whole stream dropped with a request in flight.
    script(openai, *[Script(text="slow " * 50, chunk_delay_s=0.05)] * 2)
    await stream.send(chat_request("c-1", provider="openai", cred=stored_reference("team-openai"), name="m"))
    await read_first_delta(stream, "c-1")
    await stream.send(cancel_request("c-1"))
    assert (await stream.read_until_done(["c-1"])).terminal("c-1").error.status == "CANCELLED"
    dropped = gateway.open_stream((("x-internal-service-key", good_token),))
    await dropped.send(chat_request("c-2", provider="openai", cred=inline_openai, name="m"))
    await read_first_delta(dropped, "c-2")
    dropped.call.cancel()
    await stream.call.done_writing()
    await stream.read_to_end()

    for emulator, secret in ((openai, INLINE_KEY), (openai, STORED_KEY), (anthropic, ANTHROPIC_KEY)):
        assert any(secret in repr(r.headers) for r in emulator.requests), f"{secret} never reached its emulator"
    signatures = [token.rsplit(".", 1)[1] for token in (good_token, forged_token, expired_token)]
    return [
        gateway.api_key,
        key_secret,
        wrong_secret_key,
        wrong_secret_key.split("_", 2)[2],
        good_token,
        forged_token,
        expired_token,
        *signatures,
        JWT_SECRET,
        INLINE_KEY,
        ANTHROPIC_KEY,
        STORED_KEY,
        CREDENTIALS_KEY,
    ]


def script(emulator: Emulator, *scripts: Script) -> None:
    """Exactly these answers next (nothing left over from an earlier step)."""
    emulator.clear()
    emulator.enqueue(*scripts)


async def read_first_delta(stream: StreamDriver, request_id: str) -> None:
    while not stream.collected.frames[request_id]:
        stream.collected.add(await stream.call.read())


async def test_no_secret_in_any_log_line(
    gateway: RunningGateway, emulators: dict[str, Emulator], every_logger_at_debug: pytest.LogCaptureFixture
) -> None:
    caplog = every_logger_at_debug
    secrets = await run_with_faults(gateway, emulators)
    await gateway.server.stop()  # what shutting down logs counts too
    records = caplog.records
    assert len(records) > 20, "the run logged almost nothing: the capture is not working"
    assert any(r.name.startswith("integration_api") for r in records)
    assert any(not r.name.startswith(("integration_api", "providers", "auth")) for r in records)  # third-party too
    assert any(r.exc_info for r in records) or any("refused" in r.getMessage() for r in records)
    text = caplog.text
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:12]}...) is in the captured log output"
    for record in records:
        line = record_text(record)
        for secret in secrets:
            assert secret not in line, f"a secret ({secret[:12]}...) is in a {record.name} record: {line[:1500]}"
