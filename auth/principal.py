"""Who is calling: the identity an authenticated stream or RPC runs as.

A `Principal` is what authentication produces and what the rest of the gateway may look at (for logs,
quotas, auditing). It never carries a secret, so it is safe to log in full through `describe()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AuthMethod = Literal["api_key", "jwt", "anonymous"]

ANONYMOUS_ID = "anonymous"


@dataclass(frozen=True, slots=True)
class Principal:
    """The organization and project a caller acts for, and how that was established."""

    organization_id: str
    project_id: str
    user_id: str | None = None
    method: AuthMethod = "api_key"
    key_id: str | None = None

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
