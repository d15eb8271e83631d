"""Turn a call's gRPC metadata into a `Principal`, or refuse it with `Unauthenticated`.

``x-api-key`` is checked against the `ApiKeyStore` (in a worker thread: SQLite blocks); otherwise
``x-internal-service-key`` is verified as a service JWT. Successful key verifications are cached briefly,
keyed by a hash of the key, so a burst of new streams does not query SQLite each time. A revoke through the
same store empties that cache at once; a revoke made elsewhere (the ``keys`` CLI, another worker process)
takes effect within `cache_ttl_s`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from auth.api_keys import ApiKeyStore
from auth.jwt_tokens import DEFAULT_LEEWAY_S, verify_service_token
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


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal
    expires_at: float
    generation: int


def _header(metadata: Metadata, name: str) -> str | None:
    """The first non-empty value of a metadata key (names compared case-insensitively)."""
    for key, value in metadata:
        if key.lower() != name or not value:
            continue
        if isinstance(value, bytes):
            try:
                return value.decode("ascii")
            except UnicodeDecodeError:
                raise Unauthenticated(f"{name} metadata is not ASCII text") from None
        return value
    return None


class Authenticator:
    """Authenticates calls from their metadata, by project API key or service JWT."""

    def __init__(
        self,
        settings: Settings,
        store: ApiKeyStore | None = None,
        *,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        cache_size: int = DEFAULT_CACHE_SIZE,
        jwt_leeway_s: float = DEFAULT_LEEWAY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._disabled = settings.auth_disabled
        self._store = store if store is not None else ApiKeyStore(settings.data_dir)
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret is not None else ""
        self._jwt_secret = secret or None
        self._jwt_leeway_s = jwt_leeway_s
        self._cache_ttl_s = cache_ttl_s
        self._cache_size = cache_size
        self._clock = clock
        self._cache: dict[str, _Cached] = {}

    @property
    def disabled(self) -> bool:
        """True when every caller is let in as anonymous (the server must log a loud warning)."""
        return self._disabled

    async def authenticate(self, metadata: Metadata | None) -> Principal:
        """The caller's principal; raises `Unauthenticated` when credentials are missing or not accepted."""
        if self._disabled:
            return Principal.anonymous()
        metadata = metadata or ()
        api_key = _header(metadata, API_KEY_HEADER)
        if api_key is not None:
            return await self._verify_api_key(api_key)
        token = _header(metadata, SERVICE_KEY_HEADER)
        if token is not None:
            return self._verify_token(token)
        raise Unauthenticated(MISSING_CREDENTIALS)

    def _verify_token(self, token: str) -> Principal:
        if self._jwt_secret is None:
            raise Unauthenticated(NO_JWT_SECRET)
        return verify_service_token(token, self._jwt_secret, leeway_s=self._jwt_leeway_s)

    async def _verify_api_key(self, api_key: str) -> Principal:
        cache_key = hashlib.sha256(api_key.encode()).hexdigest()
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

    def _cached(self, cache_key: str) -> Principal | None:
        entry = self._cache.get(cache_key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock() or entry.generation != self._store.generation:
            del self._cache[cache_key]
            return None
        return entry.principal

    def _remember(self, cache_key: str, principal: Principal, generation: int) -> None:
        if self._cache_ttl_s <= 0 or self._cache_size <= 0:
            return
        if len(self._cache) >= self._cache_size:
            self._evict()
        self._cache[cache_key] = _Cached(principal, self._clock() + self._cache_ttl_s, generation)

    def _evict(self) -> None:
        """Drop expired and stale entries; if none were, drop the oldest (dicts keep insertion order)."""
        now, generation = self._clock(), self._store.generation
        stale = [key for key, entry in self._cache.items() if entry.expires_at <= now or entry.generation != generation]
        for key in stale:
            del self._cache[key]
        if not stale:
            del self._cache[next(iter(self._cache))]
