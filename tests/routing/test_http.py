"""A route on the OpenAI-compatible HTTP API: ``model = "route/NAME"``, through the openai SDK."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.conftest import make_settings
from tests.http.conftest import start_http_gateway, stop_http_gateway
from tests.routing.local import simulated


async def test_model_route_name_falls_back_like_on_grpc(tmp_path: Path) -> None:
    broken = simulated("broken", parameters={"model.simulated_error": 503})
    route = {"targets": [broken, simulated("echo")]}
    gateway = await start_http_gateway(make_settings(tmp_path, routes={"fast": route}, retry_max_attempts=1))
    try:
        client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key=gateway.api_key, max_retries=0)
        async with client:
            stream = await client.chat.completions.create(
                model="route/fast", messages=[{"role": "user", "content": "hello over a route"}], stream=True
            )
            text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
            with pytest.raises(openai.NotFoundError) as missing:
                await client.chat.completions.create(model="route/missing", messages=[{"role": "user", "content": "x"}])
    finally:
        await stop_http_gateway(gateway)
    assert text == "hello over a route"
    assert missing.value.status_code == 404
