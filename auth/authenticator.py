"""Turn a call's gRPC metadata into a `Principal`, or refuse it with `Unauthenticated`.

``x-api-key`` is checked against the `ApiKeyStore` (in a worker thread: SQLite blocks) and
``x-internal-service-key`` is verified as a service JWT. Every credential a call presents must be valid: with
both headers, an invalid one refuses the call even when the other is valid (the key's principal is used when
both are), and a header repeated with two different values is refused. An empty value counts as absent.

Successful verifications are cached briefly, keyed by a hash of the credential, so that re-authenticating on
every request of a stream (to see revocations and expiry) costs a dictionary lookup:

- API keys for `cache_ttl_s` (`Authenticator.revocation_window_s`, 30 s by default). A revoke through the same
  store empties that cache at once; a revoke made elsewhere (the ``keys`` CLI, another worker process) takes
  effect within that window.
- Service tokens for the same time, but a cache hit still checks the token's ``exp`` against the wall clock, so
  a token is refused the moment it expires, cached or not.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from auth.api_keys import ApiKeyStore
from auth.client_certs import CertificatePrincipals, ClientCertificate
from auth.jwt_tokens import DEFAULT_LEEWAY_S, verify_token
from auth.principal import Principal
from integration_api.errors import Unauthenticated
from integration_api.settings import Settings

API_KEY_HEADER = "x-api-key"
SERVICE_KEY_HEADER = "x-internal-service-key"
DEFAULT_CACHE_TTL_S = 30.0
DEFAULT_CACHE_SIZE = 4096

Metadata = Sequence[tuple[str, str | bytes]]

MISSING_CREDENTIALS = f"missing credentials: send {API_KEY_HEADER} or {SERVICE_KEY_HEADER} metadata"
KEY_REJECTED = (
    f"{API_KEY_HEADER} was not accepted: the key is malformed, unknown or revoked"
    " (create one with `integration-api keys create`)"
)
NO_JWT_SECRET = (
    f"{SERVICE_KEY_HEADER} was sent but this server has no JWT secret configured"
    " (set INTEGRATION_API_JWT_SECRET), so it cannot verify service tokens"
)
TOKEN_EXPIRED = f"{SERVICE_KEY_HEADER} was not accepted: the token has expired"
_TOKEN_HUMAN_MESSAGE = "The service token is not valid."


def conflicting_values(name: str) -> str:
    return f"{name} metadata was sent more than once with different values; send one credential of each kind"


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal
    expires_at: float  # by the monotonic clock: when the entry is dropped
    generation: int  # the key store's, for API keys; 0 for tokens
    not_after: float | None = None  # by the wall clock: a token's exp plus the leeway, None for API keys


def _header(metadata: Metadata, name: str) -> str | None:
    """The non-empty value of a metadata key (names compared case-insensitively), refused when ambiguous."""
    found: str | None = None
    for key, value in metadata:
        if key.lower() != name or not value:
            continue
        if isinstance(value, bytes):
            try:
                value = value.decode("ascii")
            except UnicodeDecodeError:
                raise Unauthenticated(f"{name} metadata is not ASCII text") from None
        if found is not None and value != found:
            raise Unauthenticated(conflicting_values(name))
        found = value
    return found


def _digest(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()


class Authenticator:
    """Authenticates calls from their metadata, by project API key and/or service JWT.

    `clock` (monotonic) times the cache; `wall_clock` (seconds since the epoch) checks tokens' time claims.
    Both are injectable so that tests move time instead of waiting for it.
    """

    def __init__(
        self,
        settings: Settings,
        store: ApiKeyStore | None = None,
        *,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        cache_size: int = DEFAULT_CACHE_SIZE,
        jwt_leeway_s: float = DEFAULT_LEEWAY_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._disabled = settings.auth_disabled
        self._store = store if store is not None else ApiKeyStore(settings.data_dir)
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret is not None else ""
        self._jwt_secret = secret or None
        self._jwt_leeway_s = jwt_leeway_s
        self._jwt_max_lifetime_s = settings.jwt_max_lifetime_s
        self._cache_ttl_s = cache_ttl_s
        self._cache_size = cache_size
        self._clock = clock
        self._wall_clock = wall_clock
        self._cache: dict[str, _Cached] = {}
        self._certificates = CertificatePrincipals(settings.tls_client_principal_map)  # mTLS (auth.client_certs)

    @property
    def disabled(self) -> bool:
        """True when every caller is let in as anonymous (the server must log a loud warning)."""
        return self._disabled

    @property
    def revocation_window_s(self) -> float:
        """How long a revoked API key may still be accepted (when revoked by another process): the cache TTL."""
        return max(self._cache_ttl_s, 0.0) if self._cache_size > 0 else 0.0

    async def authenticate(self, metadata: Metadata | None, certificate: ClientCertificate | None = None) -> Principal:
        """The caller's principal; raises `Unauthenticated` when credentials are missing or any is not accepted.

        `certificate` is the client certificate the TLS handshake verified (mTLS), if any: when
        `tls_client_principal_map` maps it, it is the caller's principal (``auth.client_certs``).
        """
        if self._disabled:
            return Principal.anonymous()
        metadata = metadata or ()
        api_key = _header(metadata, API_KEY_HEADER)
        token = _header(metadata, SERVICE_KEY_HEADER)
        certificate_principal = self._certificates.principal_for(certificate) if certificate is not None else None
        if api_key is None and token is None:
            if certificate_principal is not None:
                return certificate_principal
            raise Unauthenticated(MISSING_CREDENTIALS)
        # Both are verified when both are sent: a bad one must not hide behind a good one.
        key_principal = await self._verify_api_key(api_key) if api_key is not None else None
        token_principal = self._verify_token(token) if token is not None else None
        principal = certificate_principal or key_principal or token_principal
        assert principal is not None
        return principal

    def _verify_token(self, token: str) -> Principal:
        if self._jwt_secret is None:
            raise Unauthenticated(NO_JWT_SECRET)
        cache_key = "jwt:" + _digest(token)
        cached = self._cached(cache_key)
        if cached is not None:
            return cached
        verified = verify_token(
            token,
            self._jwt_secret,
            leeway_s=self._jwt_leeway_s,
            max_lifetime_s=self._jwt_max_lifetime_s,
            clock=self._wall_clock,
        )
        self._remember(cache_key, verified.principal, 0, not_after=verified.expires_at + self._jwt_leeway_s)
        return verified.principal

    async def _verify_api_key(self, api_key: str) -> Principal:
        cache_key = "key:" + _digest(api_key)
        cached = self._cached(cache_key)
        if cached is not None:
            return cached
        # Read the generation before verifying: a revoke racing with this check then voids the entry.
        generation = self._store.generation
        principal = await asyncio.to_thread(self._store.verify, api_key)
        if principal is None:
            raise Unauthenticated(KEY_REJECTED, human_message="The API key is not valid.")
        self._remember(cache_key, principal, generation)
        return principal

    def _stale(self, entry: _Cached, now: float, generation: int) -> bool:
        if entry.expires_at <= now:
            return True
        if entry.not_after is None:
            return entry.generation != generation
        return False

    def _cached(self, cache_key: str) -> Principal | None:
        entry = self._cache.get(cache_key)
        if entry is None:
            return None
        if self._stale(entry, self._clock(), self._store.generation):
            del self._cache[cache_key]
            return None
        if entry.not_after is not None and entry.not_after <= self._wall_clock():
            del self._cache[cache_key]
            raise Unauthenticated(TOKEN_EXPIRED, human_message=_TOKEN_HUMAN_MESSAGE)
        return entry.principal

    def _remember(
        self, cache_key: str, principal: Principal, generation: int, *, not_after: float | None = None
    ) -> None:
        if self._cache_ttl_s <= 0 or self._cache_size <= 0:
            return
        if len(self._cache) >= self._cache_size:
            self._evict()
        self._cache[cache_key] = _Cached(principal, self._clock() + self._cache_ttl_s, generation, not_after)

    def _evict(self) -> None:
        """Drop expired and stale entries; if none were, drop the oldest (dicts keep insertion order)."""
        now, generation, wall_now = self._clock(), self._store.generation, self._wall_clock()
        stale = [
            key
            for key, entry in self._cache.items()
            if self._stale(entry, now, generation) or (entry.not_after is not None and entry.not_after <= wall_now)
        ]
        for key in stale:
            del self._cache[key]
        if not stale:
            del self._cache[next(iter(self._cache))]
