"""`Credential`: the vendor credential sent with each request, built from keyword arguments per vendor.

The gateway holds no vendor keys: every request carries its own credential (docs/protocol.md,
``Credential.value``). The constructors below use the value keys each vendor adapter reads. The repr never shows
a secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Value keys that are not secret and may be shown in a repr.
_PUBLIC_KEYS = frozenset({"endpoint", "region", "project_id", "base_url", "api_version", "organization"})


@dataclass(frozen=True, slots=True, repr=False)
class Credential:
    """A vendor credential: string `values` (e.g. ``{"key": "sk-..."}``) and an optional numeric `id`.

    Build one with the constructor for the vendor, e.g. ``Credential.openai(key=...)``,
    ``Credential.azure(subscription_key=..., endpoint=...)``,
    ``Credential.vertex(project_id=..., service_account_key=..., region=...)``, or ``Credential.of(**values)``.
    """

    values: Mapping[str, str] = field(default_factory=dict)
    id: int = 0

    @classmethod
    def of(cls, *, id: int = 0, **values: str | None) -> Credential:
        """A credential with arbitrary value keys; None values are left out."""
        return cls({name: value for name, value in values.items() if value is not None}, id)

    @classmethod
    def openai(cls, *, key: str, base_url: str | None = None, organization: str | None = None) -> Credential:
        return cls.of(key=key, base_url=base_url, organization=organization)

    @classmethod
    def azure(cls, *, subscription_key: str, endpoint: str, api_version: str | None = None) -> Credential:
        return cls.of(subscription_key=subscription_key, endpoint=endpoint, api_version=api_version)

    @classmethod
    def anthropic(cls, *, key: str, base_url: str | None = None) -> Credential:
        return cls.of(key=key, base_url=base_url)

    @classmethod
    def gemini(cls, *, key: str, base_url: str | None = None) -> Credential:
        return cls.of(key=key, base_url=base_url)

    @classmethod
    def vertex(
        cls,
        *,
        project_id: str,
        service_account_key: str | Mapping[str, Any],
        region: str,
        base_url: str | None = None,
    ) -> Credential:
        """`service_account_key` is the JSON key file's text, or its parsed content."""
        key_text = service_account_key if isinstance(service_account_key, str) else json.dumps(service_account_key)
        return cls.of(project_id=project_id, service_account_key=key_text, region=region, base_url=base_url)

    @classmethod
    def mistral(cls, *, key: str, base_url: str | None = None) -> Credential:
        return cls.of(key=key, base_url=base_url)

    @classmethod
    def cohere(cls, *, key: str, base_url: str | None = None) -> Credential:
        return cls.of(key=key, base_url=base_url)

    @classmethod
    def replicate(cls, *, key: str, base_url: str | None = None) -> Credential:
        return cls.of(key=key, base_url=base_url)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={value!r}" if name in _PUBLIC_KEYS else f"{name}='***'"
            for name, value in sorted(self.values.items())
        )
        return f"Credential({shown}{', id=' + str(self.id) if self.id else ''})"
