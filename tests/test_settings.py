"""Settings: flags over environment over the TOML file over defaults; frozen; comma-separated URL lists."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from integration_api.settings import CLIENT_ENV_VARS, ConfigError, Settings, environment_warnings

ROOT = Path(__file__).parent.parent


def test_precedence_flags_env_file_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('port = 7000\nhost = "0.0.0.0"\nmax_inflight_per_stream = 4\n')
    monkeypatch.setenv("INTEGRATION_API_PORT", "7100")
    monkeypatch.setenv("INTEGRATION_API_ALLOWED_BASE_URLS", "http://127.0.0.1:*, http://localhost:8080")
    settings = Settings.load(config, host="10.0.0.1", data_dir=None)
    assert settings.host == "10.0.0.1"  # flag
    assert settings.port == 7100  # environment beats the file
    assert settings.max_inflight_per_stream == 4  # file beats the default
    assert settings.grace_period_s == 15.0  # default
    assert settings.allowed_base_urls == ("http://127.0.0.1:*", "http://localhost:8080")
    assert settings.base_url_allowed("http://127.0.0.1:9000/v1") and not settings.base_url_allowed("http://evil")


def test_settings_are_frozen_and_validated(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(ValidationError):
        settings.port = 1
    with pytest.raises(ValidationError):
        Settings(max_inflight_per_stream=0)
    with pytest.raises(ValidationError):
        Settings(no_such_setting=1)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="config file not found"):
        Settings.load(tmp_path / "missing.toml")


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"INTEGRATION_API_{name.upper()}" not in readme]
    assert not missing, f"README's configuration table lacks {missing}"


def test_a_loaded_config_file_pickles_into_worker_processes(tmp_path: Path) -> None:
    # `serve --workers N` sends the settings to spawned processes by pickle.
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{tmp_path}"\nauth_disabled = true\n[provider_base_urls]\nopenai = "http://x/v1"\n')
    settings = Settings.load(config, port=7000)
    assert type(settings) is Settings
    copy = pickle.loads(pickle.dumps(settings))
    assert copy == settings and copy.auth_disabled and copy.provider_base_urls == {"openai": "http://x/v1"}


def test_a_file_value_fills_in_only_what_the_environment_leaves_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('log_level = "debug"\nidle_timeout_s = 5\n')
    monkeypatch.setenv("integration_api_idle_timeout_s", "7")  # names match case-insensitively, as pydantic does
    settings = Settings.load(config)
    assert (settings.log_level, settings.idle_timeout_s) == ("DEBUG", 7.0)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"env": ("INTEGRATION_API_PORT", "99999")}, "invalid setting port: INTEGRATION_API_PORT='99999': "),
        ({"flags": {"workers": 0}}, "invalid setting workers: --workers 0: Input should be greater than or equal to 1"),
        ({"file": "port = 70000\n"}, "invalid setting port: port = 70000 in "),
        ({"file": "prot = 1\n"}, "unknown setting 'prot' in "),
        ({"file": "port = \n"}, "is not valid TOML"),
        ({"env": ("INTEGRATION_API_LOG_LEVEL", "loud")}, "'CRITICAL', 'ERROR', 'WARNING', 'INFO' or 'DEBUG'"),
        ({"env": ("INTEGRATION_API_JWT_SECRET", "")}, None),  # valid: an empty secret is "none configured"
        ({"env": ("INTEGRATION_API_PROVIDER_BASE_URLS", "{oops")}, 'field "provider_base_urls"'),
        ({"flags": {"tls_cert_file": Path("/no/such/cert.pem")}}, "invalid setting tls_cert_file: --tls-cert-file"),
        ({"flags": {"workers": 2, "port": 0}}, "needs a fixed port"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_its_value_and_what_is_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: dict[str, Any], expected: str | None
) -> None:
    config = None
    if "file" in source:
        config = tmp_path / "gateway.toml"
        config.write_text(source["file"])
    if "env" in source:
        monkeypatch.setenv(*source["env"])
    if expected is None:
        Settings.load(config, **source.get("flags", {}))
        return
    with pytest.raises(ConfigError) as raised:
        Settings.load(config, **source.get("flags", {}))
    message = str(raised.value)
    assert "\n" not in message and expected in message


def test_a_secret_is_never_shown_in_an_error(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("jwt_secret = 12345678\n")
    with pytest.raises(ConfigError) as raised:
        Settings.load(config)
    assert "invalid setting jwt_secret" in str(raised.value) and "12345678" not in str(raised.value)


def test_unknown_variables_are_warned_about_client_side_ones_are_not() -> None:
    environ = {
        "INTEGRATION_API_PROT": "1",
        "INTEGRATION_API_PORT": "1",
        "INTEGRATION_API_KEY": "ia_x",
        "INTEGRATION_API_ENABLED": "false",
        "PATH": "/bin",
    }
    [warning] = environment_warnings(environ)
    assert warning.startswith("warning: INTEGRATION_API_PROT ") and "did you mean INTEGRATION_API_PORT?" in warning


def test_every_integration_api_variable_the_code_reads_is_a_setting_or_a_client_variable() -> None:
    # Keeps CLIENT_ENV_VARS the one complete list: a new variable read anywhere must be added there (or be a setting).
    sources = [*ROOT.glob("integration_api/**/*.py"), *ROOT.glob("auth/*.py"), *ROOT.glob("examples/*.py")]
    sources += [ROOT / "Dockerfile", ROOT / "README.md"]
    named = {match for path in sources for match in re.findall(r"INTEGRATION_API_[A-Z][A-Z_]*[A-Z]", path.read_text())}
    settings = {f"INTEGRATION_API_{name.upper()}" for name in Settings.model_fields}
    assert named - settings - CLIENT_ENV_VARS == set()
    assert named >= CLIENT_ENV_VARS  # no stale entry either
