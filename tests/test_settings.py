"""Settings: flags over environment over the TOML file over defaults; frozen; comma-separated URL lists."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from integration_api.settings import Settings


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
        settings.port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Settings(max_inflight_per_stream=0)
    with pytest.raises(ValidationError):
        Settings(no_such_setting=1)  # type: ignore[call-arg]
    with pytest.raises(FileNotFoundError):
        Settings.load(tmp_path / "missing.toml")


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"INTEGRATION_API_{name.upper()}" not in readme]
    assert not missing, f"README's configuration table lacks {missing}"
