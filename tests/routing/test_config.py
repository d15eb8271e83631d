"""The routes setting: the README's example is valid, mistakes are refused at start-up, unary Chat is routed too."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from integration_api.proto import integration_api_pb2 as pb
from integration_api.settings import ConfigError, Settings
from tests.conftest import make_settings, start_gateway
from tests.grpc_helpers import chat_request, metrics
from tests.routing.conftest import routed_gateway
from tests.routing.local import simulated

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readmes_example_route_is_valid(tmp_path: Path) -> None:
    section = README.read_text().split("## Routing", 1)[1]
    example = re.search(r"```toml\n(.*?)```", section, re.S)
    assert example is not None
    config = tmp_path / "gateway.toml"
    config.write_text(example.group(1))
    route = Settings.load(config).routes["fast"]
    assert [t.provider for t in route.targets] == ["openai", "azure", "anthropic"]
    assert route.hedge_after_ms == 100 and route.breaker.failures == 5


@pytest.mark.parametrize(
    ("route", "problem"),
    [
        ({"targets": []}, "at least 1"),
        ({"targets": [{"provider": "openai", "credential": {"key": "k"}, "credential_ref": "x"}]}, "not both"),
        ({"targets": [{"provider": "route:other"}]}, "not another route"),
        ({"targets": [{"provider": "simulated", "parameters": {"temperature": 1}}]}, "model.<name>"),
        ({"targets": [{"provider": "simulated"}], "fallback_on": [42]}, "not an HTTP status"),
    ],
)
def test_invalid_routes_are_refused(tmp_path: Path, route: dict[str, Any], problem: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("")
    with pytest.raises(ConfigError) as refused:
        Settings.load(config, routes={"r": route})
    assert problem in str(refused.value)


def test_a_bad_route_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="route name"):
        Settings.load(None, routes={"no spaces": {"targets": [simulated("echo")]}})


async def test_a_target_naming_a_disabled_provider_stops_the_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, routes={"r": {"targets": [{"provider": "nope"}]}})
    with pytest.raises(ValueError, match="route 'r', target 0: provider 'nope' is not enabled"):
        await start_gateway(settings)


async def test_unary_chat_is_routed_and_unrouted_frames_are_unchanged(tmp_path: Path) -> None:
    route = {"targets": [simulated("broken", parameters={"model.simulated_error": 529}), simulated("echo")]}
    async with routed_gateway(tmp_path, {"r": route}, retry_max_attempts=1) as gateway:
        routed = await gateway.unified.Chat(chat_request("u1", provider="route:r"), metadata=gateway.metadata)
        plain = await gateway.unified.Chat(chat_request("u2", provider="simulated"), metadata=gateway.metadata)
        version = await gateway.unified.GetVersion(pb.GetVersionRequest(), metadata=gateway.metadata)
    assert routed.success and routed.servedBy == "simulated/echo" and metrics(routed)["SERVED_BY"] == "simulated/echo"
    assert plain.success and not plain.servedBy and "SERVED_BY" not in metrics(plain)
    assert "route:r" in {p.name for p in version.providers}
