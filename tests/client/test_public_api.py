"""The public surface: what `integration_api.client` exports, and that none of it is a generated class."""

from __future__ import annotations

import inspect
from pathlib import Path

from google.protobuf.message import Message as ProtoMessage

import integration_api.client as client_package
from integration_api.client import AsyncChatResponse, AsyncChatStream, AsyncClient, ChatResponse, ChatStream, Client
from integration_api.testing import fake

EXPECTED = {
    "CLIENT_PROTOCOL_REVISION", "DEFAULT_TARGET", "ENABLED_ENV", "MINIMUM_SERVER_REVISION", "APIConnectionError",
    "APIError", "APITimeoutError", "AssistantMessage", "AsyncChatResponse", "AsyncChatStream", "AsyncClient",
    "AuthenticationError", "BadRequestError", "ChatEvent", "ChatResponse", "ChatResult", "ChatStream", "Client",
    "ClientDisabledError", "ConflictError", "Credential", "CredentialCheck", "Embedding", "EmbeddingResult",
    "IncompatibleServerError", "IntegrationAPIError", "InternalServerError", "Message", "MessageParam",
    "ModerationResult", "NotFoundError", "PermissionDeniedError", "ProviderInfo", "RateLimitError",
    "RequestCancelledError", "RequestTooLargeError", "RerankResult", "RerankedDocument", "ServiceUnavailableError",
    "StreamClosedError", "StreamInterruptedError", "SystemMessage", "TextDelta", "Timings", "Tool", "ToolCall",
    "ToolCallDelta", "ToolMessage", "ToolParam", "ToolResult", "UnimplementedError", "Usage", "UserMessage",
    "VersionInfo", "LatencyStats", "ProviderStats", "ServerStats", "SessionInfo",
}  # fmt: skip


def test_exports() -> None:
    assert set(client_package.__all__) == EXPECTED
    assert all(hasattr(client_package, name) for name in client_package.__all__)
    assert set(fake.__all__) == {"AsyncFakeClient", "FakeClient", "FakeGateway", "FakeReply", "RecordedCall"}


def test_no_generated_class_in_the_public_surface() -> None:
    for name in client_package.__all__:
        exported = getattr(client_package, name)
        assert not (inspect.isclass(exported) and issubclass(exported, ProtoMessage)), name
    for cls in (AsyncClient, Client, AsyncChatStream, ChatStream, AsyncChatResponse, ChatResponse):
        for method_name, method in inspect.getmembers(cls, inspect.isfunction):
            if not method_name.startswith("_"):
                assert "pb." not in str(inspect.signature(method)), f"{cls.__name__}.{method_name}"


def test_sync_and_async_twins_have_the_same_methods() -> None:
    def public(cls: type) -> set[str]:
        return {name for name in dir(cls) if not name.startswith("_")}

    assert public(AsyncClient) - {"aclose"} == public(Client) - {"close"}
    assert public(AsyncChatStream) - {"aclose"} == public(ChatStream) - {"close"}
    assert public(AsyncChatResponse) == public(ChatResponse)


def test_packages_ship_py_typed() -> None:
    root = Path(client_package.__file__).parents[2]
    for package in ("integration_api", "providers", "auth"):
        assert (root / package / "py.typed").is_file()
    assert (root / "integration_api" / "proto" / "integration_api_pb2.pyi").is_file()
