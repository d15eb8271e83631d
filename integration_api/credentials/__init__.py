"""Vendor credentials kept by the server, so that a request references one by name instead of carrying the secret.

``integration-api credentials add NAME --provider openai --key ...`` stores a credential encrypted at rest
(Fernet, key from the ``credentials_key`` setting; `_cipher`) in SQLite in the data directory (`_store`); a request
sends ``Credential.value = {"credential_ref": "NAME"}`` (or a bare ``Credential.id``), and `Gateway.provider`
resolves it (`StoredCredentials.resolve`, `_resolver`) before the adapter is built, under the key's scope.
"""

from integration_api.credentials._cipher import CredentialCipher, CredentialKeyError, generate_key, parse_keys
from integration_api.credentials._resolver import (
    CREDENTIAL_ID_KEY,
    CREDENTIAL_REF_KEY,
    StoredCredentials,
    credential_allowed,
)
from integration_api.credentials._store import (
    CredentialExists,
    CredentialRecord,
    CredentialStore,
    StoredCredential,
    valid_name,
)

__all__ = [
    "CREDENTIAL_ID_KEY",
    "CREDENTIAL_REF_KEY",
    "CredentialCipher",
    "CredentialExists",
    "CredentialKeyError",
    "CredentialRecord",
    "CredentialStore",
    "StoredCredential",
    "StoredCredentials",
    "credential_allowed",
    "generate_key",
    "parse_keys",
    "valid_name",
]
