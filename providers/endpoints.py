"""Which base URL an adapter talks to: the credential's `base_url`, a server-side override, or the vendor default.

A caller-supplied URL could make the gateway call any host, so it is honoured only when it starts with one of
the prefixes in `Settings.allowed_base_urls`; otherwise the request fails with PermissionDenied.
Server-side per-provider URLs (`Settings.provider_base_urls`, e.g. a company proxy) are trusted.
"""

from __future__ import annotations

from integration_api.errors import InvalidArgument, PermissionDenied
from providers.base import CredentialValue, ProviderEnv


def resolve_base_url(
    provider: str, credential: CredentialValue, env: ProviderEnv, *, key: str = "base_url"
) -> str | None:
    """The base URL to use, or None for the SDK's default. `key` names the credential field (Azure: endpoint)."""
    supplied = credential.get(key)
    if supplied not in (None, ""):
        if not isinstance(supplied, str):
            raise InvalidArgument(f"credential field {key!r} must be text")
        if not env.settings.base_url_allowed(supplied):
            raise PermissionDenied(
                f"base URL {supplied!r} from the credential is not allowed by this server; "
                "an operator can allow it with INTEGRATION_API_ALLOWED_BASE_URLS",
                human_message="This server does not allow calling that endpoint.",
            )
        return supplied
    return env.settings.provider_base_urls.get(provider)


def required_field(provider: str, credential: CredentialValue, key: str) -> str:
    """A non-empty text field of the credential, or a clear InvalidArgument naming it (never its value)."""
    value = credential.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"the {provider} credential needs a non-empty {key!r} field")
    return value
