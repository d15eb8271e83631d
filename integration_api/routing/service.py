"""`UnifiedProviderService/GetRoutes` (revision 3): the routes of this server process and each target's state.

It goes through the gateway's unary path (authenticated, one access-log line, errors as gRPC statuses), as the
SessionService RPCs do. It shows no credential and no base URL: only provider, model and counters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from integration_api.context import RequestContext
from integration_api.proto import integration_api_pb2 as pb
from integration_api.routing.router import RouteSnapshot

if TYPE_CHECKING:
    from integration_api.gateway import Gateway


def routes_response(snapshot: list[RouteSnapshot]) -> pb.GetRoutesResponse:
    return pb.GetRoutesResponse(
        routes=[
            pb.RouteInfo(
                name=route.name,
                balance=route.balance,
                hedgeAfterMs=int(route.hedge_after_ms),
                targets=[
                    pb.RouteTargetInfo(
                        provider=t.provider,
                        model=t.model,
                        rank=t.rank,
                        weight=t.weight,
                        breakerState=t.breaker.value,
                        inFlight=t.in_flight,
                        maxConcurrent=t.max_concurrent,
                        attempts=t.attempts,
                        failures=t.failures,
                        firstTokenMs=t.first_token_ms,
                    )
                    for t in route.targets
                ],
            )
            for route in snapshot
        ]
    )


async def get_routes(gateway: Gateway, context: grpc.aio.ServicerContext) -> pb.GetRoutesResponse:
    async def routes(request_context: RequestContext) -> pb.GetRoutesResponse:
        return routes_response(gateway.routes.snapshot())

    return await gateway._unary(context, "GetRoutes", "", routes)
