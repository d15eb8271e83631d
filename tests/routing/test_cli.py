"""`integration-api routes`: the configured routes from the config file, and a running server's live state."""

from __future__ import annotations

import json
from pathlib import Path

from integration_api.testing.emulators import Emulator, Fault, Script
from tests.routing.conftest import openai_target, routed_gateway, run_one
from tests.routing.local import simulated
from tests.test_cli import invoke

CONFIG = """
[routes.fast]
hedge_after_ms = 100
[[routes.fast.targets]]
provider = "openai"
model = "gpt-4o-mini"
credential = { key = "sk-not-shown", base_url = "https://llm.internal.example/v1" }
weight = 2
parameters = { "model.temperature" = 0.2 }
[[routes.fast.targets]]
provider = "simulated"
model = "echo"
max_concurrent = 8
"""


async def test_lists_the_configured_routes_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG)
    result = await invoke("routes", "--config", str(config))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "route:fast (weighted, hedge after 100 ms)"
    assert lines[2].split() == ["0", "openai/gpt-4o-mini", "2", "-"]
    assert lines[3].split() == ["1", "simulated/echo", "1", "8"]
    assert "sk-not-shown" not in result.output and "internal" not in result.output


async def test_routes_come_from_the_environment_as_json(tmp_path: Path) -> None:
    routes = {"env": {"targets": [simulated("echo")], "balance": "least_in_flight"}}
    result = await invoke("routes", env={"INTEGRATION_API_ROUTES": json.dumps(routes)})
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "route:env (least_in_flight)"


async def test_a_bad_route_is_one_error_line_without_the_key(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[routes.bad]\ntargets = [{ provider = "openai", weight = -1, credential = { key = "sk-x" } }]\n')
    result = await invoke("routes", "--config", str(config))
    assert result.exit_code == 2
    assert "routes" in result.output and "weight" in result.output and "sk-x" not in result.output


async def test_shows_a_running_servers_breaker_state(tmp_path: Path, emulators: list[Emulator]) -> None:
    sick, healthy = emulators
    sick.default_script = Script(fault=Fault(status=503))
    route = {"targets": [openai_target(sick, "a"), openai_target(healthy, "b")], "breaker": {"failures": 1}}
    async with routed_gateway(tmp_path, {"live": route}, retry_max_attempts=1) as gateway:
        await run_one(gateway, "live")
        target = f"127.0.0.1:{gateway.server.port}"
        result = await invoke("routes", "--target", target, "--api-key", gateway.api_key)
        refused = await invoke("routes", "--target", target)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "route:live (weighted)"
    sick_row, healthy_row = lines[2].split(), lines[3].split()
    assert sick_row[1] == "openai/a" and sick_row[4:8] == ["open", "0", "1", "1"]
    assert healthy_row[1] == "openai/b" and healthy_row[4:8] == ["closed", "0", "1", "0"] and healthy_row[-1] == "ms"
    assert refused.exit_code == 2 and "UNAUTHENTICATED" in refused.output
