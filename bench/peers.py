"""Peer gateways the benchmark compares with, each installed in its own virtualenv by ``make bench-peers``.

(e) is the LiteLLM proxy (``litellm[proxy]`` in bench/.peers-venv) with one model pointed at the same OpenAI
emulator. It is optional: when the virtualenv is missing the scenario is skipped with a note, and when the proxy
fails to start the benchmark notes why and carries on.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from bench.procs import ServerProcess, free_port, http_ok, start_server

VENV = Path(__file__).resolve().parent / ".peers-venv"
STARTUP_TIMEOUT_S = 180.0  # the proxy imports a great deal before it listens
MODEL = "gpt-4o-mini"


def litellm_executable() -> Path | None:
    path = VENV / "bin" / "litellm"
    return path if path.is_file() else None


def litellm_config(emulator_base_url: str, master_key: str) -> str:
    """The proxy's config: one model, OpenAI-compatible, at the emulator; a master key, no retries."""
    return f"""model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{MODEL}
      api_base: {emulator_base_url}
      api_key: sk-bench
litellm_settings:
  num_retries: 0
  request_timeout: 60
  telemetry: false
  drop_params: true
general_settings:
  master_key: {master_key}
"""


def start_litellm(log_dir: Path, emulator_base_url: str) -> tuple[ServerProcess, str]:
    """The running proxy and the master key clients authenticate with (it refuses to start without one)."""
    executable = litellm_executable()
    if executable is None:
        raise RuntimeError(f"LiteLLM is not installed in {VENV}; run `make bench-peers`")
    log_dir.mkdir(parents=True, exist_ok=True)
    config = log_dir / "litellm.yaml"
    master_key = f"sk-{secrets.token_hex(32)}"
    config.write_text(litellm_config(emulator_base_url, master_key))
    port = free_port()
    argv = [str(executable), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    env = {
        "LITELLM_LOG": "ERROR",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no download of the cost map at start-up
        "LITELLM_TELEMETRY": "False",
        "DISABLE_ADMIN_UI": "True",
        "NO_DOCS": "True",
    }
    ready = http_ok("/health/liveliness")
    server = start_server("litellm", argv, port, log_dir, env=env, ready=ready, timeout_s=STARTUP_TIMEOUT_S)
    return server, master_key
