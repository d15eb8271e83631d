"""The vendors the gateway speaks to: one table, each vendor declared once.

Everything that lists vendors reads `VENDORS`: the registry (`providers.registry`: protocol names, built-in specs
and their RPCs, hence GetVersion), the per-provider gRPC services (`integration_api.services`), the wire-format
emulators and `integration-api emulate` (`integration_api.testing.emulators`), and the tests (the vendor matrix,
the registry test, and the check that the client's `Credential` constructors take exactly these credential fields).

Adding a vendor touches its adapter (`providers/<name>.py`, exposing `SPEC`), its emulator
(`integration_api/testing/emulators/<name>.py`, exposing `EMULATOR`), its tests, and one entry below (plus its
`Credential.<name>(...)` constructor in the client, which a test holds to the entry's credential fields; the gRPC
service must already exist in the .proto).

Kept import-light on purpose: no vendor SDK, no gRPC, no protobuf, no settings (a test checks), so the emulators
and tools may import it without loading the server. The client does not import it (a bare client install lacks
the dependencies of the `providers` package); the test of `Credential` compares its constructors with it instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from providers.base import CHAT_RPCS


@dataclass(frozen=True, slots=True)
class Vendor:
    """One vendor: its protocol name, its gRPC service, the credential fields it reads and the RPCs it serves."""

    name: str  # the `providerName` of the protocol, e.g. "openai"
    service: str  # its per-provider gRPC service in the .proto, e.g. "OpenAiService"
    required: tuple[str, ...]  # credential value keys the adapter refuses to work without
    optional: tuple[str, ...]  # credential value keys it also accepts
    rpcs: frozenset[str]  # what its adapter's `SPEC.rpcs` declares (a test checks)
    description: str  # one line, the same as its adapter's `SPEC.description` (a test checks)

    @property
    def adapter_module(self) -> str:
        """The module whose `SPEC` is this vendor's `ProviderSpec`; imported on first use (it loads the SDK)."""
        return f"providers.{self.name}"

    @property
    def emulator_module(self) -> str:
        """The module whose `EMULATOR` is this vendor's wire-format emulator class."""
        return f"integration_api.testing.emulators.{self.name}"

    @property
    def credential_fields(self) -> tuple[str, ...]:
        return self.required + self.optional


_KEY = ("key",)
_BASE_URL = ("base_url",)

VENDORS: tuple[Vendor, ...] = (
    Vendor(
        name="openai",
        service="OpenAiService",
        required=_KEY,
        optional=("base_url", "organization"),
        rpcs=CHAT_RPCS | {"Embedding", "GetModeration"},
        description="OpenAI and OpenAI-compatible servers (chat completions)",
    ),
    Vendor(
        name="azure",
        service="AzureService",
        required=("subscription_key", "endpoint"),  # `endpoint`, the resource URL, is Azure's base URL
        optional=("api_version",),
        rpcs=CHAT_RPCS | {"Embedding", "GetModeration"},
        description="Azure OpenAI (chat completions on a resource's deployments)",
    ),
    Vendor(
        name="anthropic",
        service="AnthropicService",
        required=_KEY,
        optional=_BASE_URL,
        rpcs=CHAT_RPCS,
        description="Anthropic Claude (Messages API)",
    ),
    Vendor(
        name="gemini",
        service="GeminiService",
        required=_KEY,
        optional=_BASE_URL,
        rpcs=CHAT_RPCS | {"Embedding"},
        description="Google Gemini API (generateContent) through google-genai",
    ),
    Vendor(
        name="vertexai",
        service="VertexAiService",
        required=("project_id", "service_account_key", "region"),  # service_account_key: the JSON key file's text
        optional=_BASE_URL,
        rpcs=CHAT_RPCS | {"Embedding"},
        description="Gemini on Google Cloud Vertex AI through google-genai",
    ),
    Vendor(
        name="mistral",
        service="MistralService",
        required=_KEY,
        optional=_BASE_URL,
        rpcs=CHAT_RPCS,
        description="Mistral AI chat completions",
    ),
    Vendor(
        name="cohere",
        service="CohereService",
        required=_KEY,
        optional=_BASE_URL,
        rpcs=CHAT_RPCS | {"Embedding", "Reranking"},
        description="Cohere v2 chat, embed and rerank",
    ),
    Vendor(
        name="replicate",
        service="ReplicateService",
        required=_KEY,
        optional=_BASE_URL,
        rpcs=CHAT_RPCS,
        description="language models hosted on Replicate (streamed predictions)",
    ),
)

VENDOR_NAMES: tuple[str, ...] = tuple(vendor.name for vendor in VENDORS)

_BY_NAME = {vendor.name: vendor for vendor in VENDORS}


def vendor(name: str) -> Vendor:
    """The vendor called `name`; KeyError if there is none (callers word their own error for their audience)."""
    return _BY_NAME[name]


__all__ = ["VENDORS", "VENDOR_NAMES", "Vendor", "vendor"]
