"""Resolving a request's credential reference into the stored credential's value, before the adapter is built.

A request names a stored credential instead of carrying the secret in one of two ways:

- ``Credential.value = {"credential_ref": "NAME"}``: by name (the way to use it);
- ``Credential.id = N`` with an empty ``value``: by the stored credential's numeric id (``credentials list``
  shows it). Only when this server keeps stored credentials: otherwise ``Credential.id`` keeps its old meaning
  (none), so clients that fill it in for their own bookkeeping are unaffected. An id sent next to a value is never
  a reference.

`StoredCredentials.resolve` is called once per request by `Gateway.provider`, so every RPC (StreamChat, Chat,
Embedding, Reranking, VerifyCredential, GetModeration, the HTTP API) resolves the same way. A reference carries
no other field; the principal's key scope (`KeyScope.credentials`, globs) must allow the name (PERMISSION_DENIED
naming it otherwise); an unknown name or id is NOT_FOUND; a credential stored for another provider than the
request's is FAILED_PRECONDITION. Decrypted values are cached in memory for `cache_ttl_s` (30 s): a credential
removed or replaced by another process (the CLI) is still served for at most that long; through this object, at
once. Lookups block (one SQLite read on a cache miss, ~0.1 ms): they run on the event loop, like the adapter's
construction they precede.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from auth.principal import Principal
from integration_api.context import RequestContext
from integration_api.credentials._cipher import CredentialCipher, CredentialKeyError
from integration_api.credentials._store import CredentialStore, StoredCredential
from integration_api.errors import FailedPrecondition, Internal, InvalidArgument, NotFound, PermissionDenied
from integration_api.settings import Settings
from providers.base import CredentialValue

CREDENTIAL_REF_KEY = "credential_ref"
CREDENTIAL_ID_KEY = "credential_id"  # where `integration_api.requests.credential_value` puts a bare Credential.id
DEFAULT_CACHE_TTL_S = 30.0
DEFAULT_CACHE_SIZE = 1024

NO_STORE = (
    "the request references a stored credential, but this server keeps none"
    " (set INTEGRATION_API_CREDENTIALS_KEY and add one with `integration-api credentials add`)"
)


@dataclass(frozen=True, slots=True)
class _Cached:
    credential: StoredCredential
    expires_at: float


def credential_allowed(principal: Principal, name: str) -> bool:
    """Whether the principal's scope lets it use the stored credential `name` (no scope, or no globs: any)."""
    return principal.scope is None or principal.scope.allows_credential(name)


class StoredCredentials:
    """The server's stored credentials, as requests reference them. The store is opened on first use."""

    def __init__(
        self,
        data_dir: Path,
        cipher: CredentialCipher | None,
        *,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        cache_size: int = DEFAULT_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._data_dir = data_dir
        self._cipher = cipher
        self._store: CredentialStore | None = None
        self._lock = threading.Lock()
        self._cache_ttl_s = cache_ttl_s
        self._cache_size = cache_size
        self._clock = clock
        self._cache: dict[str | int, _Cached] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> StoredCredentials:
        """Raises `CredentialKeyError` at start-up when `credentials_key` is set but malformed."""
        key = settings.credentials_key.get_secret_value() if settings.credentials_key is not None else ""
        return cls(settings.data_dir, CredentialCipher.from_setting(key) if key.strip() else None)

    @property
    def enabled(self) -> bool:
        return self._cipher is not None

    @property
    def store(self) -> CredentialStore:
        if self._cipher is None:
            raise FailedPrecondition(NO_STORE)
        with self._lock:
            if self._store is None:
                self._store = CredentialStore(self._data_dir, self._cipher)
            return self._store

    def forget(self) -> None:
        """Drop every cached value (after a change through this process)."""
        self._cache.clear()

    def resolve(self, context: RequestContext, credential: CredentialValue) -> CredentialValue:
        """`credential` itself, or the value of the stored credential it references (see the module docstring)."""
        if self._cipher is None and set(credential) == {CREDENTIAL_ID_KEY}:
            return {}  # a bare Credential.id on a server without stored credentials means nothing, as before
        reference = self._reference(credential)
        if reference is None:
            return credential
        if isinstance(reference, str) and not credential_allowed(context.principal, reference):
            raise _denied(reference)
        stored = self._lookup(reference)
        name = stored.record.name
        if not credential_allowed(context.principal, name):
            raise _denied(name)
        if stored.record.provider != context.provider:
            raise FailedPrecondition(
                f"stored credential {name!r} is for provider {stored.record.provider!r},"
                f" not {context.provider!r}: reference one stored for {context.provider!r}"
            )
        return stored.value

    def _reference(self, credential: CredentialValue) -> str | int | None:
        by_name, by_id = credential.get(CREDENTIAL_REF_KEY), credential.get(CREDENTIAL_ID_KEY)
        if by_name is None and by_id is None:
            return None
        if len(credential) != 1:
            others = sorted(set(credential) - {CREDENTIAL_REF_KEY, CREDENTIAL_ID_KEY})
            raise InvalidArgument(
                f"a credential that references a stored one carries no other field (found: {', '.join(others)})"
            )
        if by_name is not None:
            if not isinstance(by_name, str) or not by_name:
                raise InvalidArgument(f"{CREDENTIAL_REF_KEY} must be the name of a stored credential")
            return by_name
        if isinstance(by_id, bool) or not isinstance(by_id, int | float) or by_id != int(by_id) or by_id <= 0:
            raise InvalidArgument("Credential.id must be the positive id of a stored credential")
        return int(by_id)

    def _lookup(self, reference: str | int) -> StoredCredential:
        now = self._clock()
        cached = self._cache.get(reference)
        if cached is not None and cached.expires_at > now:
            return cached.credential
        store = self.store
        try:
            stored = store.get(reference) if isinstance(reference, str) else store.get_by_id(reference)
        except CredentialKeyError as exc:
            raise Internal("a stored credential cannot be decrypted with this server's credentials key") from exc
        if stored is None:
            what = f"named {reference!r}" if isinstance(reference, str) else f"with id {reference}"
            raise NotFound(f"no stored credential {what} (see `integration-api credentials list`)")
        if self._cache_ttl_s > 0 and self._cache_size > 0:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()  # rare; entries are cheap to rebuild
            self._cache[reference] = _Cached(stored, now + self._cache_ttl_s)
        return stored


def _denied(name: str) -> PermissionDenied:
    return PermissionDenied(
        f"this key's scope does not allow stored credential {name!r}",
        human_message="This key may not use that stored credential.",
    )
