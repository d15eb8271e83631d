"""The `vertexai` provider: Gemini on Google Cloud Vertex AI, through the official `google-genai` SDK.

Credential: ``project_id``, ``region`` and ``service_account_key`` (the service account's JSON key file, as text),
optionally ``base_url`` (honoured only when the server's allowlist permits it). google-auth signs a JWT with the
key and exchanges it at the key's ``token_uri`` for an access token, which the SDK caches and refreshes; the SDK
runs that blocking exchange in a worker thread (``asyncio.to_thread``), off the event loop. A ``token_uri`` that
is not Google's is a place the gateway would send a signed assertion to, so it must pass the same allowlist as
base URLs. Chat, Embedding and the wire mapping are `GeminiProvider`'s; VerifyCredential lists the project's
models in the region, which proves the key, the project and the region at once.
"""

from __future__ import annotations

import json
import re
from typing import Any

import requests
from google import genai
from google.auth.transport import requests as google_requests
from google.oauth2 import service_account

from integration_api.errors import InvalidArgument, PermissionDenied
from integration_api.settings import Settings
from providers._http import Scrubber, scrubbed
from providers.base import CredentialValue, Provider, ProviderEnv, ProviderSpec
from providers.clients import credential_digest
from providers.endpoints import required_field, resolve_base_url
from providers.gemini import RPCS, SDK_ERRORS, GeminiProvider, GenaiClient, http_client, http_options

NAME = "vertexai"
API_VERSION = "v1beta1"  # the SDK's own default for Vertex AI, pinned against GOOGLE_GENAI_API_VERSION
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
GOOGLE_TOKEN_URIS = frozenset(
    {
        "https://oauth2.googleapis.com/token",
        "https://accounts.google.com/o/oauth2/token",
        "https://www.googleapis.com/oauth2/v4/token",
    }
)
_KEY_FIELDS = ("client_email", "private_key", "token_uri")
# The region becomes part of the host name (https://{region}-aiplatform.googleapis.com) and the project part of
# the path: anything else could point the request, and the access token, somewhere else.
_REGION = re.compile(r"[a-z][a-z0-9-]{0,62}")
_PROJECT = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9.:_-]{0,127}")


class VertexAIProvider(GeminiProvider):
    """`GeminiProvider` over a Vertex AI client; only the credential check differs."""

    def __init__(self, client: GenaiClient, project: str, region: str) -> None:
        super().__init__(client, name=NAME)
        self._project = project
        self._region = region

    async def verify_credential(self) -> str:
        try:
            # query_base=False lists the project's own models in the region, not Google's public catalogue.
            await self._client.aio.models.list(config={"query_base": False, "page_size": 1})
        except SDK_ERRORS as exc:
            raise self._error(exc) from exc
        return f"{NAME} credential accepted for project {self._project!r} in {self._region!r}"


def service_account_info(text: str) -> dict[str, Any]:
    """The parsed JSON key file, checked for the fields google-auth needs (named, never quoted, when missing)."""
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument("the vertexai credential's 'service_account_key' must be a JSON key file") from exc
    if not isinstance(info, dict):
        raise InvalidArgument("the vertexai credential's 'service_account_key' must be a JSON object")
    for key in _KEY_FIELDS:
        if not isinstance(info.get(key), str) or not info[key]:
            raise InvalidArgument(f"the vertexai credential's 'service_account_key' needs a non-empty {key!r} field")
    return info


def check_token_uri(token_uri: str, settings: Settings) -> None:
    if token_uri in GOOGLE_TOKEN_URIS or settings.base_url_allowed(token_uri):
        return
    raise PermissionDenied(
        "the service account key's token_uri is not a Google endpoint and is not allowed by this server; "
        "an operator can allow it with INTEGRATION_API_ALLOWED_BASE_URLS",
        human_message="This server does not allow the token endpoint named in the service account key.",
    )


def _checked(credential: CredentialValue, key: str, pattern: re.Pattern[str]) -> str:
    value = required_field(NAME, credential, key)
    if not pattern.fullmatch(value):
        raise InvalidArgument(f"the vertexai credential's {key!r} field is not a valid Google Cloud {key}")
    return value


class _NoRedirectCredentials(service_account.Credentials):
    """Service-account credentials whose token exchange never follows a redirect.

    The SDK refreshes through ``google.auth.transport.requests``, whose session follows a 307 with the signed
    assertion in the body: an allowed ``token_uri`` could then hand it to any host. Copies (``with_scopes``...)
    keep this class, since google-auth builds them with ``self.__class__``.
    """

    def refresh(self, request: Any) -> None:
        del request  # the SDK's: a session that follows redirects
        session = requests.Session()
        session.max_redirects = 0  # requests raises TooManyRedirects before sending the redirected request
        try:
            super().refresh(google_requests.Request(session))  # type: ignore[no-untyped-call]
        finally:
            session.close()


def _credentials(info: dict[str, Any]) -> service_account.Credentials:
    try:
        credentials: service_account.Credentials = _NoRedirectCredentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=list(SCOPES)
        )
        return credentials
    except ValueError as exc:  # an unreadable private key; its text is never repeated
        raise InvalidArgument("the vertexai service account key's private key could not be loaded") from exc


def _factory(credential: CredentialValue, env: ProviderEnv) -> Provider:
    project = _checked(credential, "project_id", _PROJECT)
    region = _checked(credential, "region", _REGION)
    key_file = required_field(NAME, credential, "service_account_key")
    info = service_account_info(key_file)
    check_token_uri(info["token_uri"], env.settings)
    base_url = resolve_base_url(NAME, credential, env)

    def create() -> GenaiClient:
        credentials = _credentials(info)
        http = http_client(env.settings)
        options = http_options(base_url, API_VERSION, http)
        client = genai.Client(
            vertexai=True, project=project, location=region, credentials=credentials, http_options=options
        )
        return GenaiClient(client, http, credentials)

    client = env.clients.get_or_create(credential_digest(NAME, credential, base_url), create)
    # The key file never goes upstream, but its private key is scrubbed too: the access token is what is sent.
    secrets = Scrubber(client.access_token, info["private_key"], key_file)
    return scrubbed(VertexAIProvider(client, project, region), secrets)


SPEC = ProviderSpec(NAME, _factory, RPCS, "Gemini on Google Cloud Vertex AI through google-genai")
