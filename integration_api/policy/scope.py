"""Scope checks: may this caller use this provider and this model now? PERMISSION_DENIED naming the scope if not.

A request must fit its key's scope (API keys) and its project's (every principal, service JWTs included); a
missing scope allows everything. Model globs apply to the RPCs that use a model (chat, embeddings, reranking,
moderation), not to VerifyCredential; a request that names no model is refused by a scope with model globs,
since the provider's default model might be outside them.
"""

from __future__ import annotations

from datetime import datetime

from auth.principal import KeyScope
from integration_api.errors import PermissionDenied

_HUMAN = "This key or project is not allowed to make this request."


def check_scope(scope: KeyScope | None, whose: str, provider: str, model: str, uses_model: bool, now: datetime) -> None:
    """Raise `PermissionDenied` when `scope` (of `whose`: "this key", "project acme/chat") refuses the request."""
    if scope is None:
        return
    if scope.expired(now):
        assert scope.expires_at is not None
        raise PermissionDenied(
            f"{whose} expired at {scope.expires_at.isoformat(timespec='seconds')}",
            human_message="This API key has expired.",
        )
    if not scope.allows_provider(provider):
        raise PermissionDenied(
            f"{whose} may use providers {', '.join(scope.providers)}; not {provider}", human_message=_HUMAN
        )
    if uses_model and not scope.allows_model(model):
        refused = f"not {model}" if model else "this request names no model (set model.name)"
        raise PermissionDenied(f"{whose} may use models {', '.join(scope.models)}; {refused}", human_message=_HUMAN)
