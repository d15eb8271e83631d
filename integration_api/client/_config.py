"""How the client connects: target, authentication metadata, TLS, keepalive, timeouts, and the kill switch.

`ConnectionConfig` is built once per client from its keyword arguments and never changes. The kill switch is the
one place the client reads the environment: ``INTEGRATION_API_ENABLED=false`` makes every real connection attempt
fail with `ClientDisabledError`, so a test suite can never reach a real gateway by accident.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from integration_api.client._errors import ClientDisabledError

ENABLED_ENV = "INTEGRATION_API_ENABLED"
_TRUE = frozenset({"", "1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # the gateway's default INTEGRATION_API_MAX_MESSAGE_BYTES
KEEPALIVE_TIMEOUT_S = 10.0
USER_AGENT = "integration-api-python"


def ensure_enabled(target: str) -> None:
    """Raise `ClientDisabledError` unless the environment allows real connections (fails closed on typos)."""
    value = os.environ.get(ENABLED_ENV, "").strip().lower()
    if value in _TRUE:
        return
    if value in _FALSE:
        raise ClientDisabledError(
            f"{ENABLED_ENV}={os.environ[ENABLED_ENV]!r}: this process may not connect to a real integration-api "
            f"gateway (target {target!r}). In tests use integration_api.testing.FakeClient / AsyncFakeClient; "
            f"unset {ENABLED_ENV} to connect."
        )
    raise ClientDisabledError(
        f"{ENABLED_ENV}={os.environ[ENABLED_ENV]!r} is not understood, so connecting is refused; use 'true' or 'false'."
    )


def _pem(root_certificates: bytes | str | os.PathLike[str]) -> bytes:
    """PEM bytes as given, PEM text, or the content of a PEM file at a path."""
    if isinstance(root_certificates, bytes):
        return root_certificates
    if isinstance(root_certificates, str) and root_certificates.lstrip().startswith("-----BEGIN"):
        return root_certificates.encode()
    return Path(root_certificates).read_bytes()


def auth_metadata(api_key: str | None, service_token: str | None) -> tuple[tuple[str, str], ...]:
    if api_key and service_token:
        raise ValueError("pass either api_key or service_token, not both")
    if api_key:
        return (("x-api-key", api_key),)
    if service_token:
        return (("x-internal-service-key", service_token),)
    return ()


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """Everything needed to open a channel to the gateway. The repr never shows the key or token."""

    target: str
    metadata: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    tls: bool = False
    root_certificates: bytes | None = field(default=None, repr=False)
    keepalive: float | None = 30.0
    timeout: float | None = 600.0
    reconnect_attempts: int = 5
    max_message_bytes: int = MAX_MESSAGE_BYTES

    @classmethod
    def build(
        cls,
        target: str,
        *,
        api_key: str | None,
        service_token: str | None,
        tls: bool | None,
        root_certificates: bytes | str | os.PathLike[str] | None,
        keepalive: float | None,
        timeout: float | None,
        reconnect_attempts: int,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> ConnectionConfig:
        if not target:
            raise ValueError("target must be 'host:port' of the gateway")
        if tls is False and root_certificates is not None:
            raise ValueError("root_certificates were given but tls=False")
        if keepalive is not None and keepalive <= 0:
            raise ValueError("keepalive must be a positive number of seconds, or None to disable pings")
        if reconnect_attempts < 0:
            raise ValueError("reconnect_attempts must be >= 0")
        if max_message_bytes <= 0:
            raise ValueError("max_message_bytes must be a positive number of bytes")
        return cls(
            target=target,
            metadata=auth_metadata(api_key, service_token),
            tls=bool(tls) or root_certificates is not None,
            root_certificates=None if root_certificates is None else _pem(root_certificates),
            keepalive=keepalive,
            timeout=timeout,
            reconnect_attempts=reconnect_attempts,
            max_message_bytes=max_message_bytes,
        )

    def channel_options(self) -> list[tuple[str, int | str]]:
        options: list[tuple[str, int | str]] = [
            ("grpc.primary_user_agent", USER_AGENT),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            # Reconnect quickly after a server restart; the stream's own backoff bounds the attempts.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 5_000),
        ]
        if self.keepalive is not None:
            options += [
                ("grpc.keepalive_time_ms", int(self.keepalive * 1000)),
                ("grpc.keepalive_timeout_ms", int(KEEPALIVE_TIMEOUT_S * 1000)),
                ("grpc.http2.max_pings_without_data", 0),  # keep long, quiet streams alive
            ]
        return options

    def create_channel(self) -> grpc.aio.Channel:
        """A new channel; refuses when the kill switch is off. Call it inside the event loop that will use it."""
        ensure_enabled(self.target)
        if not self.tls:
            return grpc.aio.insecure_channel(self.target, options=self.channel_options())
        credentials = grpc.ssl_channel_credentials(root_certificates=self.root_certificates)
        return grpc.aio.secure_channel(self.target, credentials, options=self.channel_options())
