"""Who is calling: the identity an authenticated stream or RPC runs as, and what it may do.

A `Principal` is what authentication produces and what the rest of the gateway may look at (for logs,
quotas, auditing). It never carries a secret, so it is safe to log in full through `describe()`.

A `KeyScope` is what a key (or a service token's project) is allowed: which providers, models and stored vendor
credentials (shell-style globs, ``fnmatch``), which limits apply, until when. An empty glob tuple and a ``None``
limit mean "no restriction", so a key created without flags may do everything it could before scopes existed.
The policy layer (``integration_api.policy``) enforces it for every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, Literal

AuthMethod = Literal["api_key", "jwt", "client_cert", "anonymous"]  # client_cert: mTLS

ANONYMOUS_ID = "anonymous"


def _matches(globs: tuple[str, ...], value: str) -> bool:
    # Case-sensitive on every platform: "gpt-4o*" must not depend on the server's OS.
    return not globs or any(fnmatchcase(value, pattern) for pattern in globs)


@dataclass(frozen=True, slots=True)
class KeyScope:
    """What a key may use and how fast; frozen and hashable (tuples), so principals stay cache keys."""

    providers: tuple[str, ...] = ()  # globs over provider names ("openai", "azure*"); empty: any provider
    models: tuple[str, ...] = ()  # globs over model names ("gpt-4o*"); empty: any model
    credentials: tuple[str, ...] = ()  # globs over stored credential names; empty: any stored credential
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens (input + output) per minute
    max_concurrent: int | None = None  # requests running at once
    max_streams: int | None = None  # streams open at once
    expires_at: datetime | None = None  # timezone-aware; None: never

    @property
    def unrestricted(self) -> bool:
        """True when this scope allows everything (the scope of a key created without flags)."""
        return self == KeyScope()

    @property
    def has_limits(self) -> bool:
        return any(limit is not None for limit in (self.rpm, self.tpm, self.max_concurrent, self.max_streams))

    def allows_provider(self, provider: str) -> bool:
        return _matches(self.providers, provider)

    def allows_model(self, model: str) -> bool:
        """An empty model (the provider's default) is allowed only by a scope without model globs."""
        return _matches(self.models, model)

    def allows_credential(self, name: str) -> bool:
        return _matches(self.credentials, name)

    def as_dict(self) -> dict[str, Any]:
        """Every restriction as plain JSON values (unset ones None or [])."""
        return {
            "providers": list(self.providers),
            "models": list(self.models),
            "credentials": list(self.credentials),
            "rpm": self.rpm,
            "tpm": self.tpm,
            "max_concurrent": self.max_concurrent,
            "max_streams": self.max_streams,
            "expires_at": self.expires_at.isoformat() if self.expires_at is not None else None,
        }

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def describe(self) -> str:
        """A one-line summary for listings, e.g. ``providers=openai,anthropic rpm=600 expires=2027-01-01``."""
        parts: list[str] = []
        for label, globs in (("providers", self.providers), ("models", self.models), ("credentials", self.credentials)):
            if globs:
                parts.append(f"{label}={','.join(globs)}")
        for label, limit in (
            ("rpm", self.rpm),
            ("tpm", self.tpm),
            ("max_concurrent", self.max_concurrent),
            ("max_streams", self.max_streams),
        ):
            if limit is not None:
                parts.append(f"{label}={limit}")
        if self.expires_at is not None:
            parts.append(f"expires={self.expires_at.isoformat(timespec='seconds')}")
        return " ".join(parts) or "unrestricted"


@dataclass(frozen=True, slots=True)
class Principal:
    """The organization and project a caller acts for, how that was established, and its key's scope."""

    organization_id: str
    project_id: str
    user_id: str | None = None
    method: AuthMethod = "api_key"
    key_id: str | None = None
    scope: KeyScope | None = None  # None: unrestricted (project-level limits, if any, still apply)

    @classmethod
    def anonymous(cls) -> Principal:
        """The principal of every caller when authentication is disabled."""
        return cls(organization_id=ANONYMOUS_ID, project_id=ANONYMOUS_ID, method="anonymous")

    def describe(self) -> str:
        """A one-line summary for logs, e.g. ``api_key key=Ab3dEf9hIj0k org=acme project=chat``."""
        parts: list[str] = [self.method]
        if self.key_id is not None:
            parts.append(f"key={self.key_id}")
        parts.append(f"org={self.organization_id}")
        parts.append(f"project={self.project_id}")
        if self.user_id is not None:
            parts.append(f"user={self.user_id}")
        return " ".join(parts)
