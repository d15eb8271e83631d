"""No vendor key ever leaves an adapter, even when the upstream echoes the whole request back in its errors.

Each vendor's emulator is told to echo the request (every header, the query string, the body) into its error
body and into its in-stream error event (`Fault.echo_request`), so the credential comes back to the adapter in
the upstream's own error text. The requests go through a real gateway over gRPC, and the key (a distinctive
canary) must not appear in the StreamChat error frame (the whole serialized ChatResponse), in the unary Chat
status (its details string, its trailing metadata, ``grpc-status-details-bin`` included), in VerifyCredential's
answer, nor in any log record of the process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
import pytest

from integration_api.proto import integration_api_pb2 as pb
from integration_api.testing.emulators import VENDORS, Emulator, Fault, Script, emulator_for
from integration_api.testing.emulators.vertexai import VertexAIEmulator
from tests.conftest import RunningGateway
from tests.grpc_helpers import chat_request, credential

MODELS = {"azure": "gpt-deployment", "replicate": "meta/llama-test"}
KINDS = ("http-status", "error-event")


def canary(vendor: str) -> str:
    return f"sk-LEAKCANARY-{vendor}-1234567890"


@dataclass(frozen=True)
class Case:
    vendor: str
    kind: str
    emulator: Emulator

    def credential(self) -> dict[str, Any]:
        if isinstance(self.emulator, VertexAIEmulator):
            return self.emulator.credential()
        if self.vendor == "azure":
            return {"subscription_key": canary(self.vendor), "endpoint": self.emulator.base_url}
        return {"key": canary(self.vendor), "base_url": self.emulator.base_url}

    def secrets(self) -> list[str]:
        """What must never come back: the key; for Vertex AI, the service account's private key and access tokens."""
        if isinstance(self.emulator, VertexAIEmulator):
            key = orjson.loads(self.credential()["service_account_key"])["private_key"]
            body = [line for line in key.splitlines() if line and not line.startswith("-----")]
            return [*self.emulator.issued_tokens, *body]
        return [canary(self.vendor)]

    def script(self) -> Script:
        if self.kind == "http-status":
            return Script(fault=Fault(status=401, message="key rejected", echo_request=True))
        return Script(text="a b c d", fault=Fault(error_event_after_chunks=1, message="it broke", echo_request=True))

    def request(self, request_id: str) -> pb.ChatRequest:
        name = MODELS.get(self.vendor, "test-model")
        return chat_request(request_id, "hi", provider=self.vendor, cred=credential(**self.credential()), name=name)

    def assert_clean(self, where: str, data: bytes | str) -> None:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        for secret in self.secrets():
            assert secret not in text, f"{self.vendor}: the credential leaks into {where}: {text[:2000]}"

    def assert_echoed(self) -> None:
        """The emulator did receive the secret it echoes (else the test would prove nothing)."""
        received = repr([(r.headers, r.query) for r in self.emulator.requests])
        assert any(secret in received for secret in self.secrets()), f"{self.vendor}: no secret reached the emulator"


@pytest.fixture(params=[(vendor, kind) for vendor in VENDORS for kind in KINDS], ids="-".join)
async def case(request: pytest.FixtureRequest) -> AsyncIterator[Case]:
    vendor, kind = request.param
    async with emulator_for(vendor) as emulator:
        yield Case(vendor, kind, emulator)


async def test_stream_chat_error_frame(gateway: RunningGateway, case: Case, caplog: pytest.LogCaptureFixture) -> None:
    _capture_every_log(caplog)
    case.emulator.enqueue(*[case.script()] * 3)
    stream = gateway.open_stream()
    request = case.request("leak-1")
    await stream.send(request)
    collected = await stream.read_until_done([request.requestId], timeout=20)
    frame = collected.terminal(request.requestId)
    assert not frame.success
    case.assert_echoed()
    for each in collected.frames[request.requestId]:
        case.assert_clean("the StreamChat frames", each.SerializeToString())
    _assert_logs_clean(case, caplog)


async def test_unary_chat_status(gateway: RunningGateway, case: Case, caplog: pytest.LogCaptureFixture) -> None:
    _capture_every_log(caplog)
    case.emulator.enqueue(*[case.script()] * 3)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.unified.Chat(case.request("leak-2"), metadata=gateway.metadata)
    error = caught.value
    assert error.code() != grpc.StatusCode.OK
    case.assert_echoed()
    case.assert_clean("the Chat status details", error.details() or "")
    case.assert_clean("the Chat debug error string", error.debug_error_string() or "")
    trailers = list(error.trailing_metadata() or ())
    assert "grpc-status-details-bin" in [key for key, _ in trailers]
    for key, value in trailers:
        case.assert_clean(f"the Chat trailing metadata {key!r}", value)
    _assert_logs_clean(case, caplog)


@pytest.mark.parametrize("case", [(vendor, "http-status") for vendor in VENDORS], ids="-".join, indirect=True)
async def test_verify_credential_answer(gateway: RunningGateway, case: Case, caplog: pytest.LogCaptureFixture) -> None:
    _capture_every_log(caplog)
    case.emulator.enqueue(*[case.script()] * 3)
    cred = credential(**case.credential())
    request = pb.VerifyCredentialRequest(providerName=case.vendor, credential=cred)
    answer = await gateway.unified.VerifyCredential(request, metadata=gateway.metadata)
    assert not answer.success
    case.assert_echoed()
    case.assert_clean("the VerifyCredential answer", answer.SerializeToString())
    _assert_logs_clean(case, caplog)


def _capture_every_log(caplog: pytest.LogCaptureFixture) -> None:
    """Every record at DEBUG, ours too (a test that configured the server's logging may have raised their level)."""
    caplog.set_level(logging.DEBUG)
    for name in ("integration_api", "providers", "auth"):
        caplog.set_level(logging.DEBUG, logger=name)


def _assert_logs_clean(case: Case, caplog: pytest.LogCaptureFixture) -> None:
    case.assert_clean("the logs", caplog.text)
    for record in caplog.records:
        case.assert_clean(f"the log record of {record.name}", _record_text(record))


def _record_text(record: logging.LogRecord) -> str:
    """A record's message, its raw arguments and its exception chain (a formatter could show any of them)."""
    parts = [record.getMessage(), repr(record.args)]
    error = record.exc_info[1] if record.exc_info else None
    while error is not None:
        parts.append(repr(error))
        error = error.__cause__ or error.__context__
    return "\n".join(parts)
