"""Unary RPCs through a real server: Chat status codes with google.rpc details, the other RPCs, GetVersion."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from integration_api.gateway import PROTOCOL_REVISION
from integration_api.proto import integration_api_pb2 as pb
from integration_api.proto import integration_api_pb2_grpc as pb_grpc
from tests.conftest import RunningGateway
from tests.grpc_helpers import chat_request, credential


async def test_unary_chat_returns_the_final_frame(gateway: RunningGateway) -> None:
    response = await gateway.unified.Chat(
        chat_request("u1", "just one answer", provider="simulated"), metadata=gateway.metadata
    )
    assert response.success and response.final and response.finishReason == "stop"
    assert "".join(response.data.assistant.contents) == "just one answer"
    assert response.usage.outputTokens == 3


@pytest.mark.parametrize(
    ("http_status", "code"),
    [
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (401, grpc.StatusCode.UNAUTHENTICATED),
        (403, grpc.StatusCode.PERMISSION_DENIED),
        (404, grpc.StatusCode.NOT_FOUND),
        (408, grpc.StatusCode.DEADLINE_EXCEEDED),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (500, grpc.StatusCode.UNAVAILABLE),
        (503, grpc.StatusCode.UNAVAILABLE),
        (529, grpc.StatusCode.UNAVAILABLE),
        (418, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_unary_chat_failures_are_proper_status_codes(
    gateway: RunningGateway, http_status: int, code: grpc.StatusCode
) -> None:
    request = chat_request("u-err", provider="simulated", simulated_error=http_status)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.unified.Chat(request, metadata=gateway.metadata)
    assert caught.value.code() == code
    status = rpc_status.from_call(caught.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert any(detail.Unpack(info) for detail in status.details)
    assert info.metadata["http_status"]


def test_rate_limit_carries_retry_info() -> None:
    from integration_api.errors import ResourceExhausted
    from integration_api.status import rich_status

    status = rich_status(ResourceExhausted("slow down", retry_after=2.5))
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    proto = status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    retry = error_details_pb2.RetryInfo()
    assert any(detail.Unpack(retry) for detail in proto.details)
    assert retry.retry_delay.ToNanoseconds() == 2_500_000_000


async def test_unary_chat_validation_and_unknown_provider(gateway: RunningGateway) -> None:
    for request, fragment in [
        (pb.ChatRequest(providerName="simulated"), "requestId"),
        (chat_request("x", provider="does-not-exist"), "unknown provider"),
        (pb.ChatRequest(requestId="x", action=pb.REQUEST_ACTION_CANCEL), "CANCEL"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gateway.unified.Chat(request, metadata=gateway.metadata)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in (caught.value.details() or "")


async def test_unsupported_rpc_is_unimplemented_with_a_message(gateway: RunningGateway) -> None:
    request = pb.RerankingRequest(providerName="anthropic", query="q", content={0: "a"}, credential=credential(key="k"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.unified.Reranking(request, metadata=gateway.metadata)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "anthropic" in (caught.value.details() or "")


async def test_embedding_reranking_verify_and_moderation_on_simulated(gateway: RunningGateway) -> None:
    stub, md = gateway.unified, gateway.metadata
    embedded = await stub.Embedding(
        pb.EmbeddingRequest(providerName="simulated", content={0: "a", 1: "b"}), metadata=md
    )
    assert embedded.success and [e.index for e in embedded.data] == [0, 1] and len(embedded.data[0].embedding) == 16
    ranked = await stub.Reranking(
        pb.RerankingRequest(providerName="simulated", query="red apple", content={0: "blue sky", 1: "a red apple"}),
        metadata=md,
    )
    assert [r.index for r in ranked.data] == [1, 0] and ranked.data[0].relevanceScore == 1.0
    ok = await stub.VerifyCredential(
        pb.VerifyCredentialRequest(providerName="simulated", credential=credential(key="k")), metadata=md
    )
    assert ok.success and ok.code == 200
    bad = await stub.VerifyCredential(
        pb.VerifyCredentialRequest(providerName="simulated", credential=credential(key="invalid")), metadata=md
    )
    assert not bad.success and bad.code == 401 and bad.errorMessage
    moderated = await stub.GetModeration(
        pb.GetModerationRequest(providerName="simulated", content="forbidden"), metadata=md
    )
    assert {m.name: m.value for m in moderated.data}["flagged"] == 1.0


async def test_get_version_lists_providers_and_their_rpcs(gateway: RunningGateway) -> None:
    version = await gateway.unified.GetVersion(pb.GetVersionRequest(), metadata=gateway.metadata)
    assert version.protocolRevision == PROTOCOL_REVISION and version.serverVersion
    providers = {p.name: set(p.rpcs) for p in version.providers}
    assert {"StreamChat", "Chat", "Embedding"} <= providers["simulated"]


async def test_per_provider_service_binds_its_provider(gateway: RunningGateway) -> None:
    stub = pb_grpc.AnthropicServiceStub(gateway.channel)
    request = chat_request("bound", provider="simulated")  # providerName is ignored by per-provider services
    request.credential.CopyFrom(credential())  # no key: the anthropic adapter must refuse
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Chat(request, metadata=gateway.metadata)
    assert caught.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED)
    assert "anthropic" in (caught.value.details() or "")
