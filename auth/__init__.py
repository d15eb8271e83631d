"""Authentication for the gateway: who may open a stream or call an RPC.

Callers send one of two kinds of gRPC metadata:

- ``x-api-key: ia_<key_id>_<secret>``: a project API key from `ApiKeyStore` (SQLite in the data dir; only
  SHA-256 hashes of the secrets are stored), managed with ``integration-api keys create|list|revoke``;
- ``x-internal-service-key: <jwt>``: an HS256 service token signed with the server's JWT secret, whose
  claims carry ``organizationId``, ``projectId``, optionally ``userId``, and a required ``exp``
  (``integration-api keys token`` issues one).

`Authenticator.authenticate(metadata)` returns the caller's `Principal` or raises
`integration_api.errors.Unauthenticated`.
"""

from auth.api_keys import ApiKeyRecord, ApiKeyStore
from auth.authenticator import Authenticator
from auth.jwt_tokens import issue_service_token, verify_service_token
from auth.principal import AuthMethod, Principal

__all__ = [
    "ApiKeyRecord",
    "ApiKeyStore",
    "AuthMethod",
    "Authenticator",
    "Principal",
    "issue_service_token",
    "verify_service_token",
]
