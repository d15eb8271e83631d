"""The server's one frozen settings object.

Built once at start-up from, in order of precedence: command-line flags, environment variables prefixed
``INTEGRATION_API_`` (e.g. ``INTEGRATION_API_PORT=50051``), an optional TOML config file, then the defaults
below. It is passed down explicitly; nothing reads the environment anywhere else.

`Settings.load` reports what it cannot accept as one `ConfigError` line per problem, naming the setting, where
its value came from and what is allowed; `environment_warnings` names ``INTEGRATION_API_*`` variables that set
nothing. The TOML file is read here with tomllib (not by a settings class made for the file), so a loaded
`Settings` is a plain instance that pickles into `serve --workers N` processes.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic_settings
from pydantic import Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from integration_api import url_policy
from integration_api.routing.config import RouteConfig, check_route_names

ENV_PREFIX = "INTEGRATION_API_"
# ``INTEGRATION_API_*`` variables read by the client side (the client library, `chat`, `health`, `bench`, the
# examples), never by the server: set next to the server's own, they are no typo.
CLIENT_ENV_VARS = frozenset(
    {
        "INTEGRATION_API_ENABLED",  # the client's kill switch
        "INTEGRATION_API_KEY",  # x-api-key of `chat` and `bench`
        "INTEGRATION_API_SERVICE_TOKEN",  # x-internal-service-key of `chat` and `bench`
        "INTEGRATION_API_TARGET",  # the gateway the examples talk to
        "INTEGRATION_API_TLS_SERVER_NAME",  # the TLS name `health` verifies
    }
)
LogLevel = Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]


class ConfigError(ValueError):
    """The settings cannot be built (a bad value, a missing or unreadable config file); one line per problem."""


class Settings(BaseSettings):
    """Every knob of the server. See README.md's configuration reference."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

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
    tls_cert_file: FilePath | None = Field(
        default=None, description="PEM certificate chain; with tls_key_file, serve TLS"
    )
    tls_key_file: FilePath | None = Field(default=None, description="PEM private key of tls_cert_file")
    tls_client_ca: FilePath | None = Field(
        default=None, description="PEM CA certificates; when set, every client must present a certificate they signed"
    )
    tls_client_principal_map: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='client certificate subject ("CN=name", "SAN=dns-or-uri") -> principal fields (mTLS)',
    )
    grace_period_s: float = Field(default=15.0, ge=0, description="how long SIGTERM waits for in-flight requests")
    # Behind a load balancer, a StreamChat stream stays on the replica it first reached: ageing connections and
    # streams out makes their clients reconnect, and so spreads them again (e.g. onto a replica added since).
    max_connection_age_s: float = Field(
        default=0.0, ge=0, description="GOAWAY a connection, and retire a StreamChat stream, this old; 0 = never"
    )
    max_connection_age_grace_s: float = Field(
        default=30.0, ge=0, description="how long a retired stream's in-flight requests may still run"
    )

    # HTTP front door (integration_api.http): the OpenAI-compatible API, the gRPC-JSON bridge, the chat page
    http_host: str | None = Field(default=None, description="address of the HTTP listener; default: `host`")
    http_port: int = Field(default=8080, ge=0, le=65535, description="HTTP port; 0 turns HTTP off")
    http_max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="largest HTTP request body accepted; more is refused (413)"
    )
    http_sse_ping_s: float = Field(
        default=15.0, gt=0, description="SSE comment ping interval while a stream waits (keeps proxies from cutting it)"
    )
    http_keepalive_timeout_s: float = Field(
        default=30.0, gt=0, description="an idle HTTP/1.1 keep-alive connection closes after this long"
    )

    # Storage and auth
    data_dir: Path = Path("./data")
    jwt_secret: SecretStr | None = None
    jwt_max_lifetime_s: float = Field(
        default=86_400.0, gt=0, description="longest service-token lifetime accepted: exp - iat, or exp - now"
    )
    auth_disabled: bool = False
    credentials_key: SecretStr | None = Field(
        default=None, description="Fernet key(s), comma-separated, newest first, encrypting stored credentials"
    )

    # Sessions (conversations kept by the server)
    redis_url: SecretStr | None = Field(
        default=None, description="keep sessions in this Redis (redis://host:port/db) instead of SQLite in data_dir"
    )
    session_ttl_s: float = Field(default=86_400.0, gt=0, description="a session unused this long is gone")
    session_max_messages: int = Field(default=200, ge=2, description="history kept per session; oldest dropped")
    session_max_tokens: int = Field(
        default=32_000, ge=1, description="approximate tokens (characters / 4) of history kept per session"
    )
    session_lock_timeout_s: float = Field(
        default=60.0, gt=0, description="how long a request waits for the one before it on its session (then 429)"
    )

    # Policy (integration_api.policy): key and project scopes, rate limits, budgets; shared through redis_url
    rate_limit_fail_mode: Literal["open", "closed"] = Field(
        default="open", description="while Redis is unreachable: open = limit per process, closed = refuse (503)"
    )
    rate_limit_output_tokens: int = Field(
        default=256, ge=0, description="tokens a chat reserves for its reply when it sets no model.max_tokens"
    )
    price_table_file: FilePath | None = Field(
        default=None, description="TOML prices (USD per 1M tokens) replacing or extending the shipped table"
    )

    # Usage log (integration_api.usage): one record per request, written in batches off the event loop
    database_url: SecretStr | None = Field(
        default=None, description="keep the usage log in this PostgreSQL (postgresql://...) instead of SQLite"
    )
    log_content: bool = Field(default=False, description="usage records carry the last user message and the reply")
    usage_batch_size: int = Field(default=500, ge=1, description="usage records written per batch (or sooner)")
    usage_flush_interval_s: float = Field(default=1.0, gt=0, description="longest a usage record waits to be written")

    # Streams
    max_inflight_per_stream: int = Field(default=16, ge=1, description="concurrent requests per stream; more wait")
    max_queued_per_stream: int = Field(
        default=256, ge=0, description="requests that may wait for a slot on one stream; more are refused (429)"
    )
    max_queued_bytes_per_stream: int = Field(
        default=64 * 1024 * 1024, ge=0, description="bytes of requests that may wait on one stream; more are refused"
    )
    max_queued_per_principal: int = Field(
        default=1024, ge=0, description="requests one principal may have waiting across all its streams"
    )
    max_streams_per_principal: int = Field(
        default=0, ge=0, description="open StreamChat streams one principal may hold on this server; 0 = no limit"
    )
    stream_idle_timeout_s: float = Field(
        default=0.0, ge=0, description="end a stream with nothing in flight and nothing received this long; 0 = never"
    )
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
    routes: dict[str, RouteConfig] = Field(
        default_factory=dict, description="named routes, used as providerName route:NAME (integration_api.routing)"
    )

    log_level: LogLevel = Field(
        default="INFO", description="level of our own loggers (integration_api, providers, auth)"
    )
    log_level_third_party: LogLevel = Field(
        default="WARNING", description="level of every other logger: grpc, asyncio, the HTTP clients, the SDKs"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="log lines on stderr: text, or one JSON object per line"
    )

    # Metrics (integration_api.observability; traces are set by the standard OTEL_* variables)
    metrics_port: int = Field(default=0, ge=0, le=65535, description="/metrics on this port when HTTP is off; 0: none")
    metrics_model_allowlist: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="models that keep their name in metric labels (comma-separated; * = all); others: other"
    )

    @field_validator("allowed_base_urls", "metrics_model_allowlist", mode="before")
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

    @field_validator("routes")
    @classmethod
    def _route_names(cls, value: dict[str, RouteConfig]) -> dict[str, RouteConfig]:
        return check_route_names(value)

    @field_validator("log_level", "log_level_third_party", mode="before")
    @classmethod
    def _upper_case(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.workers > 1 and self.port == 0:
            raise ValueError(
                f"workers = {self.workers} needs a fixed port: processes can only share a port they all know"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both tls_cert_file and tls_key_file")
        if self.tls_client_ca is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca (client certificates) needs TLS: set tls_cert_file and tls_key_file")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The config file is not a source here: `load` reads it and passes what the environment leaves unset.
        return (init_settings, env_settings)

    @classmethod
    def load(cls, config_file: Path | None = None, **flags: Any) -> Settings:
        """Flags (None values ignored) > environment > `config_file` (TOML) > defaults; `ConfigError` if invalid.

        Init values outrank the environment, so a file value is passed only for a setting no variable sets.
        """
        given = {name: value for name, value in flags.items() if value is not None}
        in_environment = {name for name in cls.model_fields if env_name(name) in _upper_keys(os.environ)}
        from_file = _read_config(config_file) if config_file is not None else {}
        from_file = {name: value for name, value in from_file.items() if name not in in_environment}
        try:
            return cls(**{**from_file, **given})
        except ValidationError as error:
            problems = [_describe(detail, given, config_file) for detail in error.errors()]
            raise ConfigError("\n".join(problems)) from error
        except pydantic_settings.SettingsError as error:  # a JSON-valued variable that is not JSON
            raise ConfigError(f"{error}: {error.__cause__}") from error

    @property
    def base_url_allowlist(self) -> url_policy.UrlAllowlist:
        """`allowed_base_urls`, parsed (``integration_api.url_policy`` has the matching rules)."""
        return url_policy.compile_allowlist(self.allowed_base_urls)

    def base_url_allowed(self, url: str) -> bool:
        """Whether a caller-supplied URL may be called: an `allowed_base_urls` entry matches it exactly."""
        return self.base_url_allowlist.allows(url)


def env_name(setting: str) -> str:
    return f"{ENV_PREFIX}{setting.upper()}"


def environment_warnings(environ: Mapping[str, str]) -> list[str]:
    """One line for each ``INTEGRATION_API_*`` variable that is neither a setting nor a client-side variable."""
    known = {env_name(name) for name in Settings.model_fields} | CLIENT_ENV_VARS
    warnings = []
    for variable in sorted(_upper_keys(environ) - known):
        if variable.startswith(ENV_PREFIX):
            warnings.append(f"warning: {variable} is set but names no setting; ignored{_suggestion(variable, known)}")
    return warnings


def _upper_keys(environ: Mapping[str, str]) -> set[str]:
    # pydantic-settings matches variable names case-insensitively; so do we.
    return {key.upper() for key in environ}


def _suggestion(name: str, candidates: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _read_config(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError as error:
        raise ConfigError(f"config file not found: {path}") from error
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from error


def _describe(detail: ErrorDetails, given: Mapping[str, Any], config_file: Path | None) -> str:
    """One line: the setting, where its value came from, the value (secrets masked), what is allowed."""
    if not detail["loc"]:  # a rule across settings
        return f"invalid settings: {detail['msg']}"
    name = str(detail["loc"][0])
    if detail["type"] == "extra_forbidden":
        known = set(Settings.model_fields)
        return f"unknown setting {name!r} in {config_file or 'the arguments'}{_suggestion(name, known)}"
    value = "'***'" if _is_secret(name) else repr(detail["input"])
    inner = "".join(f"[{part!r}]" for part in detail["loc"][1:])
    raw = {key.upper(): text for key, text in os.environ.items()}.get(env_name(name))
    if name in given:
        source = f"--{name.replace('_', '-')} {value}"
    elif raw is not None:
        source = f"{env_name(name)}={'***' if _is_secret(name) else repr(raw)}"
    else:
        source = f"{name}{inner} = {value} in {config_file}"
    return f"invalid setting {name}{inner}: {source}: {detail['msg']}"


def _is_secret(name: str) -> bool:
    if name == "routes":  # a route's target may carry a vendor key
        return True
    field = Settings.model_fields.get(name)
    return field is not None and SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))
