"""Driving a route without a server: a `Router` over the registry's simulated provider, for fast statistical tests."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from auth.principal import Principal
from integration_api.context import RequestContext, StreamContext
from integration_api.engine import NoFrames, complete_chat
from integration_api.frames import ResponseAccumulator
from integration_api.proto import integration_api_pb2 as pb
from integration_api.routing.config import RouteConfig
from integration_api.routing.router import Router
from integration_api.routing.targets import TargetBuilder
from providers.base import Provider, ProviderEnv
from providers.clients import ClientCache
from providers.registry import default_registry
from providers.types import ChatCall, UserMessage
from tests.conftest import make_settings


class LocalRoutes:
    """A router, and what builds one request's route provider, as `Gateway.provider` would (without the layers)."""

    def __init__(self, tmp_path: Path, routes: Mapping[str, Any], seed: int = 7) -> None:
        self.settings = make_settings(tmp_path, routes=dict(routes))
        self.router = Router(
            {name: RouteConfig.model_validate(route) for name, route in routes.items()},
            TargetBuilder(default_registry(), None),
            rng=random.Random(seed),
        )
        self.clients = ClientCache(16, 60.0)
        self._specs = {spec.name: spec for spec in self.router.specs()}
        self.stream = StreamContext(Principal("org", "proj"))

    def provider(self, route: str, request_id: str = "r") -> tuple[Provider, RequestContext]:
        context = RequestContext(self.stream, "StreamChat", f"route:{route}", request_id)
        env = ProviderEnv(self.settings, self.clients.lease(), context)
        return self._specs[f"route:{route}"].factory({}, env), context

    async def chat(self, route: str, text: str = "hello", request_id: str = "r", **params: Any) -> pb.ChatResponse:
        provider, _ = self.provider(route, request_id)
        call = ChatCall(request_id, (UserMessage(text),), {f"model.{k}": v for k, v in params.items()})
        return await complete_chat(provider, call, ResponseAccumulator(), NoFrames())


def simulated(model: str, **extra: Any) -> dict[str, Any]:
    return {"provider": "simulated", "model": model, **extra}
