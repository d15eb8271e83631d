"""Conversations kept by the server (SessionService), and the server's own counters (GetServerStats).

A backend that holds one long conversation creates a session (provider, model parameters, system prompt) and then
sends only each new message with `ChatRequest.sessionId`: the session layer (``layer``) prepends the history,
serializes the session's requests, and appends the turn only when the request succeeded. Sessions live in one
`SessionStore` (``store``): SQLite in the data directory by default (``sqlite_store``), Redis when
``INTEGRATION_API_REDIS_URL`` is set (``redis_store``), so that replicas share them. ``service`` serves the RPCs;
``stats`` holds every counter GetServerStats reports, in one place an exporter can read.
"""

from integration_api.sessions.manager import Sessions
from integration_api.sessions.state import ServerState
from integration_api.sessions.stats import ServerStats
from integration_api.sessions.store import Owner, Session, SessionStore

__all__ = ["Owner", "ServerState", "ServerStats", "Session", "SessionStore", "Sessions"]
