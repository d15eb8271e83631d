"""The `SessionStore` interface and the `Session` it stores.

A store keeps whole sessions, each under its id and its owner (organization and project): a store never returns a
session to another owner, and treats a session unused for its TTL as gone. Writes are compare-and-set on the
session's `revision`, so two processes (workers, replicas) appending to one conversation cannot lose a turn. Times
are Unix seconds, passed in by the caller (`now`), so tests drive expiry with a fake clock.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field

from auth.principal import Principal
from providers.types import ChatMessage, JsonValue

MAX_LIST = 1000  # sessions one ListSessions returns at most


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose sessions: one project of one organization (every key and token of the project shares them)."""

    organization_id: str
    project_id: str

    @classmethod
    def of(cls, principal: Principal) -> Owner:
        return cls(principal.organization_id, principal.project_id)


@dataclass(frozen=True, slots=True)
class Session:
    """One conversation: what it runs on, its history, and its counters. It never holds a credential."""

    id: str
    owner: Owner
    provider: str
    system_prompt: str = ""
    parameters: Mapping[str, JsonValue] = field(default_factory=dict)  # decoded `model.*` defaults
    messages: tuple[ChatMessage, ...] = ()  # the history, oldest first, without the system prompt
    created_at: float = 0.0
    last_used_at: float = 0.0
    revision: int = 0  # bumped by every write; a write names the revision it read
    requests: int = 0  # requests that succeeded on it
    input_tokens: int = 0
    output_tokens: int = 0
    trimmed: int = 0  # messages the trim policy has dropped so far

    @property
    def model(self) -> str:
        value = self.parameters.get("model.name")
        return value if isinstance(value, str) else ""


class SessionStore(abc.ABC):
    """Where sessions live. Every method is a coroutine; none blocks the event loop.

    `ttl_s` is the inactivity TTL: a session whose `last_used_at` is `ttl_s` or more before `now` is gone (a get
    or list does not see it, a replace fails), whether or not the store has removed it yet.
    """

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s

    def alive(self, session: Session, now: float) -> bool:
        return now - session.last_used_at < self.ttl_s

    @abc.abstractmethod
    async def create(self, session: Session, now: float) -> None:
        """Store a new session (its id is fresh)."""

    @abc.abstractmethod
    async def get(self, owner: Owner, session_id: str, now: float) -> Session | None:
        """The session, or None when it is missing, expired or `owner`'s is not its owner."""

    @abc.abstractmethod
    async def list(self, owner: Owner, now: float, limit: int = MAX_LIST) -> list[Session]:
        """`owner`'s live sessions, most recently used first, at most `limit`."""

    @abc.abstractmethod
    async def replace(self, session: Session, expected_revision: int, now: float) -> bool:
        """Write `session` over the stored one if that is still at `expected_revision` and alive; False if not."""

    @abc.abstractmethod
    async def delete(self, owner: Owner, session_id: str, now: float) -> bool:
        """Remove `owner`'s session; False when there was none (missing, expired or another owner's)."""

    @abc.abstractmethod
    async def count_active(self, now: float) -> int:
        """How many live sessions the store holds, every owner's."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections and threads."""
