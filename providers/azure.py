"""The `azure` provider: Azure OpenAI, through the official `openai` SDK's ``AsyncAzureOpenAI`` client.

Credential: ``subscription_key`` (sent as the ``api-key`` header), ``endpoint`` (the resource URL, e.g.
``https://my-resource.openai.azure.com``; it plays ``base_url``'s role, so a caller-supplied one must pass the
server's allowlist; without one the operator's ``provider_base_urls.azure`` is used) and optionally
``api_version``. The deployment is ``model.name``. The wire format is OpenAI's chat completions, so this is the
`openai` adapter over a different client; Azure's extra stream chunks (prompt filter annotations with empty
``choices``) yield nothing, and ``finish_reason: "content_filter"`` comes out as ``content_filter``.
"""

from __future__ import annotations

from openai import AsyncAzureOpenAI

from integration_api.errors import InvalidArgument
from providers._http import Scrubber, scrubbed
from providers._openai_transport import ChatSender
from providers.base import CredentialValue, Provider, ProviderEnv, ProviderSpec
from providers.clients import credential_digest
from providers.endpoints import required_field, resolve_base_url
from providers.openai import RPCS, OpenAIProvider, http_client, sdk_timeout

NAME = "azure"
# The latest GA data-plane API version; a credential's `api_version` overrides it.
DEFAULT_API_VERSION = "2024-10-21"


def _factory(credential: CredentialValue, env: ProviderEnv) -> Provider:
    key = required_field(NAME, credential, "subscription_key")
    endpoint = resolve_base_url(NAME, credential, env, key="endpoint")
    if not endpoint:
        raise InvalidArgument(
            "the azure credential needs an 'endpoint' field (the Azure OpenAI resource URL), "
            "or the server must set provider_base_urls.azure"
        )
    api_version = credential.get("api_version") or DEFAULT_API_VERSION
    if not isinstance(api_version, str):
        raise InvalidArgument("credential field 'api_version' must be text")

    def create() -> ChatSender:
        # No azure_deployment: the SDK puts /deployments/{model} in each chat and embeddings URL, so one client
        # serves every deployment of the resource.
        client = AsyncAzureOpenAI(
            azure_endpoint=endpoint,
            api_key=key,
            api_version=api_version,
            max_retries=0,
            timeout=sdk_timeout(env.settings),
            http_client=http_client(env.settings),
        )
        return ChatSender(client, env.settings)

    sender = env.clients.get_or_create(credential_digest(NAME, credential, endpoint), create)
    # Deployments are named by their owner, so there is no sensible default model.
    provider = OpenAIProvider(sender, name=NAME, chat_model=None, embedding_model=None)
    return scrubbed(provider, Scrubber(key))


SPEC = ProviderSpec(NAME, _factory, RPCS, "Azure OpenAI (chat completions on a resource's deployments)")
