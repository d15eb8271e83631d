"""The server's one frozen settings object.

Built once at start-up from, in order of precedence: command-line flags, environment variables prefixed
``INTEGRATION_API_`` (e.g. ``INTEGRATION_API_PORT=50051``), an optional TOML config file, then the defaults
below. It is passed down explicitly; nothing reads the environment anywhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from integration_api import url_policy


class Settings(BaseSettings):
    """Every knob of the server. See README.md's configuration reference."""

    model_config = SettingsConfigDict(env_prefix="INTEGRATION_API_", frozen=True, extra="forbid")

    # Network
    host: str = "127.0.0.1"
    port: int = Field(default=50051, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, description="server processes sharing the port (SO_REUSEPORT)")
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    keepalive_time_s: float = Field(default=30.0, gt=0, description="ping idle connections this often")
    keepalive_timeout_s: float = Field(default=10.0, gt=0, description="drop a connection whose ping is unanswered")
    max_pending_streams: int = Field(
        default=20_000, ge=1, description="new calls waiting to be accepted before gRPC starts refusing some"
    )
    tls_cert_file: Path | None = Field(default=None, description="PEM certificate chain; with tls_key_file, serve TLS")
    tls_key_file: Path | None = Field(default=None, description="PEM private key of tls_cert_file")
    grace_period_s: float = Field(default=15.0, ge=0, description="how long SIGTERM waits for in-flight requests")

    # Storage and auth
    data_dir: Path = Path("./data")
    jwt_secret: SecretStr | None = None
    jwt_max_lifetime_s: float = Field(
        default=86_400.0, gt=0, description="longest service-token lifetime accepted: exp - iat, or exp - now"
    )
    auth_disabled: bool = False

    # Streams
    max_inflight_per_stream: int = Field(default=16, ge=1, description="concurrent requests per stream; more wait")
    default_provider: str = "simulated"
    preload_providers: bool = Field(
        default=True, description="import every adapter's SDK at start-up, before the port opens"
    )

    # Upstream calls
    allowed_base_urls: Annotated[tuple[str, ...], NoDecode] = ()
    provider_base_urls: dict[str, str] = Field(default_factory=dict)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    first_token_timeout_s: float = Field(default=60.0, gt=0)
    idle_timeout_s: float = Field(default=30.0, gt=0, description="longest gap allowed between two chunks")
    retry_max_attempts: int = Field(default=3, ge=1)
    retry_initial_backoff_s: float = Field(default=0.5, ge=0)
    retry_max_backoff_s: float = Field(default=8.0, ge=0)
    retry_max_total_s: float = Field(default=30.0, ge=0)
    client_cache_size: int = Field(default=256, ge=1)
    client_cache_ttl_s: float = Field(default=600.0, gt=0)

    log_level: str = "INFO"

    @field_validator("allowed_base_urls", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("allowed_base_urls")
    @classmethod
    def _parse_allowlist(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # A typo here would otherwise surface as every caller's base URL being refused: fail at start-up instead.
        for entry in value:
            try:
                url_policy.parse_rule(entry)
            except url_policy.UrlRefused as exc:
                raise ValueError(
                    f"entry {entry!r} is not a valid base URL: {exc} "
                    "(write scheme://host[:port or :*][/path], e.g. https://proxy.example/v1 or http://127.0.0.1:*)"
                ) from exc
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        """Flags (`overrides`, None values ignored) > environment > `config_file` (TOML) > defaults."""
        settings_cls = cls
        if config_file is not None:
            if not config_file.is_file():
                raise FileNotFoundError(f"config file not found: {config_file}")
            config = SettingsConfigDict(**{**cls.model_config, "toml_file": config_file})
            settings_cls = type(cls.__name__, (cls,), {"model_config": config, "__doc__": cls.__doc__})
        return settings_cls(**{key: value for key, value in overrides.items() if value is not None})

    @property
    def base_url_allowlist(self) -> url_policy.UrlAllowlist:
        """`allowed_base_urls`, parsed (``integration_api.url_policy`` has the matching rules)."""
        return url_policy.compile_allowlist(self.allowed_base_urls)

    def base_url_allowed(self, url: str) -> bool:
        """Whether a caller-supplied URL may be called: an `allowed_base_urls` entry matches it exactly."""
        return self.base_url_allowlist.allows(url)
