"""`integration-api routes`: the configured routes, or, with `--target`, a running server's routes and their state.

A CLI process has no breakers of its own (breaker state is per server process, ``integration_api.routing.breaker``),
so the live view asks the server: `UnifiedProviderService/GetRoutes`, authenticated like any RPC.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from integration_api.cli_support import BAD_SETTINGS_EXIT_CODE, FLAG, load_settings
from integration_api.routing.config import RouteConfig

if TYPE_CHECKING:  # the generated code is imported only when a server is asked (`--help` stays fast)
    from integration_api.proto import integration_api_pb2 as pb

HEADER = f"{'rank':>4}  {'target':<40} {'weight':>6} {'cap':>4}"
LIVE_HEADER = f"{HEADER}  {'breaker':<9} {'in flight':>9} {'attempts':>8} {'failures':>8} {'first token':>11}"


def _cap(value: int) -> str:
    return str(value) if value else "-"


def _title(name: str, balance: str, hedge_after_ms: float) -> str:
    hedge = f", hedge after {hedge_after_ms:g} ms" if hedge_after_ms else ""
    return f"route:{name} ({balance}{hedge})"


def format_configured(routes: dict[str, RouteConfig]) -> str:
    if not routes:
        return "no routes configured (see README, Routing)"
    lines = []
    for name, route in sorted(routes.items()):
        lines += [_title(name, route.balance, route.hedge_after_ms or 0), HEADER]
        for index, t in enumerate(route.targets):
            label = f"{t.provider}/{t.model}" if t.model else t.provider
            rank = t.rank if t.rank is not None else index
            lines.append(f"{rank:>4}  {label:<40} {t.weight:>6g} {_cap(t.max_concurrent):>4}")
    return "\n".join(lines)


def format_live(response: pb.GetRoutesResponse) -> str:
    if not response.routes:
        return "the server has no routes"
    lines = []
    for route in response.routes:
        lines += [_title(route.name, route.balance, route.hedgeAfterMs), LIVE_HEADER]
        for t in route.targets:
            label = f"{t.provider}/{t.model}" if t.model else t.provider
            first = f"{t.firstTokenMs:.0f} ms" if t.firstTokenMs else "-"
            lines.append(
                f"{t.rank:>4}  {label:<40} {t.weight:>6g} {_cap(t.maxConcurrent):>4}  {t.breakerState:<9}"
                f" {t.inFlight:>9} {t.attempts:>8} {t.failures:>8} {first:>11}"
            )
    return "\n".join(lines)


def routes_command(
    target: Annotated[
        str | None, typer.Option(help="host:port of a running gateway: show its routes' live state (GetRoutes).")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="INTEGRATION_API_KEY", help="With --target: a project API key.")
    ] = None,
    service_token: Annotated[
        str | None, typer.Option(envvar="INTEGRATION_API_SERVICE_TOKEN", help="With --target: a service JWT.")
    ] = None,
    tls: Annotated[bool, typer.Option("--tls/--no-tls", metavar=FLAG, help="Connect with TLS.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server.")] = 5.0,
    config: Annotated[Path | None, typer.Option(help="A TOML config file (for the configured routes).")] = None,
) -> None:
    """List the routes: as configured, or with --target as a running server sees them (breaker state, in-flight
    requests, attempts, failures, recent time to first token per target)."""
    if target is None:
        typer.echo(format_configured(load_settings(config).routes))
        return
    import grpc

    from integration_api.proto import integration_api_pb2 as pb
    from integration_api.proto import integration_api_pb2_grpc as pb_grpc

    metadata = []
    if api_key:
        metadata.append(("x-api-key", api_key))
    if service_token:
        metadata.append(("x-internal-service-key", service_token))
    channel = grpc.secure_channel(target, grpc.ssl_channel_credentials()) if tls else grpc.insecure_channel(target)
    try:
        with channel:
            stub = pb_grpc.UnifiedProviderServiceStub(channel)
            response = stub.GetRoutes(pb.GetRoutesRequest(), metadata=metadata, timeout=timeout)
    except grpc.RpcError as error:
        typer.echo(f"error: {error.code().name}: {error.details()}", err=True)
        raise typer.Exit(1 if error.code() != grpc.StatusCode.UNAUTHENTICATED else BAD_SETTINGS_EXIT_CODE) from error
    typer.echo(format_live(response))
