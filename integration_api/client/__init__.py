"""The Python client of the integration-api gateway: `Client` and `AsyncClient`, typed results, one error tree.

    from integration_api.client import AsyncClient, Credential

    async with AsyncClient("gateway:50051", api_key=KEY) as client:
        async with client.stream("openai", credential=Credential.openai(key=OPENAI_KEY)) as stream:
            async for text in stream.chat([{"role": "user", "content": "hi"}], model="gpt-4o-mini").text_stream:
                print(text, end="")

Everything public is re-exported here; the ``_modules`` are private. For tests of code that uses the client, see
``integration_api.testing.FakeClient`` / ``AsyncFakeClient`` and the ``INTEGRATION_API_ENABLED=false`` switch.
"""

from integration_api.client._async_client import DEFAULT_TARGET, AsyncClient
from integration_api.client._config import ENABLED_ENV
from integration_api.client._credentials import Credential
from integration_api.client._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientDisabledError,
    ConflictError,
    IncompatibleServerError,
    IntegrationAPIError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestCancelledError,
    RequestTooLargeError,
    ServiceUnavailableError,
    StreamClosedError,
    StreamInterruptedError,
    UnimplementedError,
)
from integration_api.client._response import AsyncChatResponse
from integration_api.client._sessions import LatencyStats, ProviderStats, ServerStats, SessionInfo
from integration_api.client._stream import AsyncChatStream
from integration_api.client._sync_client import Client
from integration_api.client._sync_stream import ChatResponse, ChatStream
from integration_api.client._types import (
    AssistantMessage,
    ChatEvent,
    ChatResult,
    CredentialCheck,
    Embedding,
    EmbeddingResult,
    Message,
    MessageParam,
    ModerationResult,
    ProviderInfo,
    RerankedDocument,
    RerankResult,
    SystemMessage,
    TextDelta,
    Timings,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolMessage,
    ToolParam,
    ToolResult,
    Usage,
    UserMessage,
    VersionInfo,
)
from integration_api.client._version import CLIENT_PROTOCOL_REVISION, MINIMUM_SERVER_REVISION

__all__ = [
    "CLIENT_PROTOCOL_REVISION",
    "DEFAULT_TARGET",
    "ENABLED_ENV",
    "MINIMUM_SERVER_REVISION",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AssistantMessage",
    "AsyncChatResponse",
    "AsyncChatStream",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "ChatEvent",
    "ChatResponse",
    "ChatResult",
    "ChatStream",
    "Client",
    "ClientDisabledError",
    "ConflictError",
    "Credential",
    "CredentialCheck",
    "Embedding",
    "EmbeddingResult",
    "IncompatibleServerError",
    "IntegrationAPIError",
    "InternalServerError",
    "LatencyStats",
    "Message",
    "MessageParam",
    "ModerationResult",
    "NotFoundError",
    "PermissionDeniedError",
    "ProviderInfo",
    "ProviderStats",
    "RateLimitError",
    "RequestCancelledError",
    "RequestTooLargeError",
    "RerankResult",
    "RerankedDocument",
    "ServerStats",
    "ServiceUnavailableError",
    "SessionInfo",
    "StreamClosedError",
    "StreamInterruptedError",
    "SystemMessage",
    "TextDelta",
    "Timings",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolMessage",
    "ToolParam",
    "ToolResult",
    "UnimplementedError",
    "Usage",
    "UserMessage",
    "VersionInfo",
]
