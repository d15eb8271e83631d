"""Which base URL an adapter talks to: the credential's `base_url`, a server-side override, or the vendor default.

A caller-supplied URL could make the gateway call any host (and hand it the caller's vendor key), so it is
honoured only when an entry of `Settings.allowed_base_urls` matches it exactly: scheme, host, port and a path
prefix, by the rules of ``integration_api.url_policy``; otherwise the request fails with PermissionDenied. The
URL is then used in its canonical spelling, the one that was checked. Server-side per-provider URLs
(`Settings.provider_base_urls`, e.g. a company proxy) are trusted, and so is the one URL server code puts in
`ProviderEnv.trusted_base_url` (a route target's credential, written by the operator: ``integration_api.routing``);
a request can set neither.

The adapters' HTTP clients never follow redirects (see each adapter's client construction): an allowed host
answering 307 to another host must not become a call to that host.
"""

from __future__ import annotations

from integration_api.errors import InvalidArgument, PermissionDenied
from integration_api.url_policy import UrlRefused
from providers.base import CredentialValue, ProviderEnv


def resolve_base_url(
    provider: str, credential: CredentialValue, env: ProviderEnv, *, key: str = "base_url"
) -> str | None:
    """The base URL to use, or None for the SDK's default. `key` names the credential field (Azure: endpoint)."""
    supplied = credential.get(key)
    if supplied not in (None, ""):
        if not isinstance(supplied, str):
            raise InvalidArgument(f"credential field {key!r} must be text")
        if env.trusted_base_url is not None and supplied == env.trusted_base_url:
            return supplied  # written by the operator (a route's target), not by the caller
        try:
            return env.settings.base_url_allowlist.check(supplied).text
        except UrlRefused as exc:
            # The reason never repeats the URL as given: it may carry a password before an "@".
            raise PermissionDenied(
                f"the credential's {key!r} is not allowed by this server: {exc}; "
                "an operator can allow it with INTEGRATION_API_ALLOWED_BASE_URLS",
                human_message="This server does not allow calling that endpoint.",
            ) from exc
    return env.settings.provider_base_urls.get(provider)


def required_field(provider: str, credential: CredentialValue, key: str) -> str:
    """A non-empty text field of the credential, or a clear InvalidArgument naming it (never its value)."""
    value = credential.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"the {provider} credential needs a non-empty {key!r} field")
    return value
