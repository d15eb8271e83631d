"""Building each RPC's request message from a method's keyword arguments (conversions live in ``_convert``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence

from google.protobuf.message import Message

from integration_api.client._convert import credential_proto, messages_proto, model_parameters, tools_proto
from integration_api.client._credentials import Credential
from integration_api.client._errors import RequestTooLargeError
from integration_api.client._types import MessageParam, ParameterValue, ToolParam
from integration_api.proto import integration_api_pb2 as pb

Parameters = Mapping[str, ParameterValue]


def new_request_id() -> str:
    return uuid.uuid4().hex


def chat_request(
    messages: Iterable[MessageParam],
    *,
    request_id: str,
    provider: str | None,
    model: str | None,
    credential: Credential | None,
    tools: Iterable[ToolParam] | None,
    parameters: Parameters | None,
    session_id: str | None = None,
) -> pb.ChatRequest:
    if not request_id:
        raise ValueError("request_id must not be empty")
    return pb.ChatRequest(
        requestId=request_id,
        providerName=provider or "",
        credential=credential_proto(credential),
        conversations=messages_proto(messages),
        modelParameters=model_parameters(model, parameters),
        toolDefinitions=tools_proto(tools),
        sessionId=session_id or "",
    )


def ensure_fits(request: Message, limit: int, *, request_id: str | None = None) -> None:
    """Raise `RequestTooLargeError` when `request` serializes to more than `limit` bytes.

    Checked before sending because gRPC refuses an oversized message for the whole call: on a stream, every other
    request on it would fail too.
    """
    size = request.ByteSize()
    if size > limit:
        raise RequestTooLargeError(
            f"the request is {size:,} bytes serialized, over the {limit:,}-byte message limit, so it was not sent; "
            "send less (fewer or shorter messages), or raise both the gateway's INTEGRATION_API_MAX_MESSAGE_BYTES "
            "and the client's max_message_bytes",
            size=size,
            limit=limit,
            request_id=request_id,
        )


def cancel_request(request_id: str) -> pb.ChatRequest:
    return pb.ChatRequest(requestId=request_id, action=pb.REQUEST_ACTION_CANCEL)


def ping_request(request_id: str) -> pb.ChatRequest:
    return pb.ChatRequest(requestId=request_id, action=pb.REQUEST_ACTION_PING)


def _numbered(texts: str | Sequence[str], name: str) -> dict[int, str]:
    items = [texts] if isinstance(texts, str) else list(texts)
    if not all(isinstance(text, str) for text in items):
        raise TypeError(f"{name} must be a string or a list of strings")
    if not items:
        raise ValueError(f"{name} is empty")
    return dict(enumerate(items))


def embedding_request(
    inputs: str | Sequence[str],
    *,
    provider: str | None,
    model: str | None,
    credential: Credential | None,
    parameters: Parameters | None,
) -> pb.EmbeddingRequest:
    return pb.EmbeddingRequest(
        providerName=provider or "",
        credential=credential_proto(credential),
        content=_numbered(inputs, "inputs"),
        modelParameters=model_parameters(model, parameters),
    )


def rerank_request(
    query: str,
    documents: Sequence[str],
    *,
    provider: str | None,
    model: str | None,
    credential: Credential | None,
    parameters: Parameters | None,
) -> pb.RerankingRequest:
    return pb.RerankingRequest(
        providerName=provider or "",
        credential=credential_proto(credential),
        query=query,
        content=_numbered(documents, "documents"),
        modelParameters=model_parameters(model, parameters),
    )


def verify_request(credential: Credential, *, provider: str | None) -> pb.VerifyCredentialRequest:
    return pb.VerifyCredentialRequest(providerName=provider or "", credential=credential_proto(credential))


def moderation_request(
    content: str,
    *,
    provider: str | None,
    model: str | None,
    credential: Credential | None,
    parameters: Parameters | None,
) -> pb.GetModerationRequest:
    return pb.GetModerationRequest(
        providerName=provider or "",
        credential=credential_proto(credential),
        model=model or "",
        content=content,
        modelParameters=model_parameters(None, parameters),
    )
