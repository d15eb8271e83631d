"""Client certificates (mTLS) as credentials: the subject of a verified certificate mapped to a `Principal`.

With ``INTEGRATION_API_TLS_CLIENT_CA`` set, the server requires a client certificate signed by that CA in the TLS
handshake (a client without one, or with one from another CA, never gets a connection). The certificate then
identifies the caller when ``tls_client_principal_map`` names one of its subjects::

    {"CN=billing-service": {"organization": "acme", "project": "billing"},
     "SAN=spiffe://acme/chat": {"organization": "acme", "project": "chat", "user": "chat-bot"}}

``CN=`` matches the certificate's common name, ``SAN=`` any of its subject alternative names (DNS names, URIs, IP
addresses, as gRPC reports them). A mapped certificate authenticates the call by itself (no key needed; a key or
token sent as well must still be valid, and the certificate's principal is used). An unmapped certificate
authenticates nothing: the call needs an API key or service token as without mTLS. Several subjects of one
certificate mapping to different principals is refused (ambiguous), never resolved by order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from auth.principal import Principal
from integration_api.errors import Unauthenticated

COMMON_NAME_PREFIX = "CN="
SAN_PREFIX = "SAN="
ENTRY_FIELDS = frozenset({"organization", "project", "user"})

AuthContext = Mapping[str, Sequence[bytes]]


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """What the TLS layer verified about the peer's certificate: its common name and subject alternative names."""

    common_name: str | None = None
    subject_alt_names: tuple[str, ...] = ()

    @classmethod
    def from_auth_context(cls, auth_context: AuthContext) -> ClientCertificate | None:
        """The certificate described by a gRPC call's `auth_context()`, or None (plaintext, or TLS without one)."""
        common_names = auth_context.get("x509_common_name") or ()
        alt_names = auth_context.get("x509_subject_alternative_name") or ()
        if not common_names and not alt_names:
            return None
        common_name = common_names[0].decode("utf-8", "replace") if common_names else None
        return cls(common_name, tuple(name.decode("utf-8", "replace") for name in alt_names))

    def subjects(self) -> tuple[str, ...]:
        """The map keys this certificate answers to: ``CN=<common name>`` then ``SAN=<name>`` for each SAN."""
        names = [COMMON_NAME_PREFIX + self.common_name] if self.common_name else []
        return (*names, *(SAN_PREFIX + name for name in self.subject_alt_names))

    def describe(self) -> str:
        return ", ".join(self.subjects()) or "no subject"


class CertificatePrincipals:
    """The principals of mapped certificate subjects (`tls_client_principal_map`); validated when built."""

    def __init__(self, mapping: Mapping[str, Mapping[str, str]]) -> None:
        self._principals: dict[str, Principal] = {}
        for subject, entry in mapping.items():
            if not subject.startswith((COMMON_NAME_PREFIX, SAN_PREFIX)) or subject in (COMMON_NAME_PREFIX, SAN_PREFIX):
                raise ValueError(
                    f"tls_client_principal_map: {subject!r} is not CN=<common name> or SAN=<alternative name>"
                )
            unknown = sorted(set(entry) - ENTRY_FIELDS)
            if unknown or not entry.get("organization") or not entry.get("project"):
                raise ValueError(
                    f"tls_client_principal_map[{subject!r}]: needs organization and project (and optionally user)"
                    + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                )
            self._principals[subject] = Principal(
                entry["organization"], entry["project"], user_id=entry.get("user"), method="client_cert"
            )

    def __bool__(self) -> bool:
        return bool(self._principals)

    def principal_for(self, certificate: ClientCertificate) -> Principal | None:
        """The principal the certificate is mapped to, None when unmapped; `Unauthenticated` when ambiguous."""
        found = {self._principals[s] for s in certificate.subjects() if s in self._principals}
        if len(found) > 1:
            raise Unauthenticated(
                f"the client certificate ({certificate.describe()}) maps to {len(found)} different principals"
                " in tls_client_principal_map; map one of its subjects only"
            )
        return next(iter(found), None)
