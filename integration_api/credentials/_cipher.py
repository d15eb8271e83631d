"""Encryption at rest of stored vendor credentials: Fernet (AES-128-CBC + HMAC-SHA256) from `cryptography`.

The `credentials_key` setting holds one or more Fernet keys, comma-separated, newest first. The first encrypts;
every one of them decrypts (`MultiFernet`), so a key is rotated without downtime: put the new key first, keep the
old ones after it, run ``integration-api credentials rotate`` (re-encrypts every row with the first key), then drop
the old keys from the setting.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class CredentialKeyError(ValueError):
    """The credentials key is missing or malformed, or it cannot decrypt a stored credential."""


def generate_key() -> str:
    """A new random Fernet key (32 bytes, url-safe base64), for the `credentials_key` setting."""
    return Fernet.generate_key().decode("ascii")


def parse_keys(setting: str) -> tuple[str, ...]:
    """The keys of a `credentials_key` value: comma-separated, surrounding blanks ignored, empty parts dropped."""
    return tuple(part.strip() for part in setting.split(",") if part.strip())


class CredentialCipher:
    """Encrypts with the first key, decrypts with any of them."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise CredentialKeyError(
                "no credentials key: set INTEGRATION_API_CREDENTIALS_KEY"
                " (make one with `integration-api credentials generate-key`)"
            )
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode("ascii")))
            except (ValueError, UnicodeEncodeError) as exc:
                # The message names the key's position, never the key.
                raise CredentialKeyError(
                    f"credentials key #{position} is not a Fernet key (32 bytes in url-safe base64,"
                    " as `integration-api credentials generate-key` prints)"
                ) from exc
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_setting(cls, setting: str) -> CredentialCipher:
        return cls(parse_keys(setting))

    def encrypt(self, plaintext: bytes) -> bytes:
        return self._fernet.encrypt(plaintext)

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken as exc:
            raise CredentialKeyError(
                "a stored credential cannot be decrypted with any configured credentials key"
                " (was the key that encrypted it removed from INTEGRATION_API_CREDENTIALS_KEY?)"
            ) from exc

    def rotate(self, token: bytes) -> bytes:
        """`token` re-encrypted with the first key."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken as exc:
            raise CredentialKeyError("a stored credential cannot be decrypted with any configured key") from exc
