"""The `integration-api` command: serve, chat (a one-shot demo client), demo, keys, emulate."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from auth.cli import keys_app
from integration_api.loadtest import bench_command
from integration_api.settings import Settings

app = typer.Typer(help="A gRPC gateway to every major LLM provider.", no_args_is_help=True)
app.add_typer(keys_app, name="keys", help="Create, list and revoke API keys; issue service tokens.")
app.command(name="bench")(bench_command)


def _run(coroutine: object) -> None:
    try:
        import uvloop

        uvloop.run(coroutine)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coroutine)  # type: ignore[arg-type]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [env INTEGRATION_API_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env INTEGRATION_API_PORT].")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the key store lives [env INTEGRATION_API_DATA_DIR].")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Server processes on one port [env INTEGRATION_API_WORKERS].")
    ] = None,
    auth_disabled: Annotated[
        bool | None, typer.Option("--auth-disabled", help="Accept unauthenticated clients.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="A TOML config file (lowest precedence).")] = None,
) -> None:
    """Run the gateway until SIGTERM/SIGINT, then drain in-flight requests."""
    settings = Settings.load(
        config, host=host, port=port, data_dir=data_dir, workers=workers, auth_disabled=auth_disabled
    )
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from integration_api.workers import run_workers

    run_workers(settings)


@app.command()
def chat(
    message: Annotated[str, typer.Argument(help="The user message.")],
    target: Annotated[str, typer.Option(help="host:port of the gateway.")] = "127.0.0.1:50051",
    provider: Annotated[str, typer.Option(help="Provider name.")] = "simulated",
    model: Annotated[str, typer.Option(help="model.name")] = "",
    api_key: Annotated[str | None, typer.Option(envvar="INTEGRATION_API_KEY", help="x-api-key.")] = None,
    credential_key: Annotated[str | None, typer.Option(envvar="PROVIDER_API_KEY", help="The vendor key.")] = None,
    delay_ms: Annotated[int, typer.Option(help="simulated provider: delay per word.")] = 0,
) -> None:
    """Stream one reply to the terminal."""
    from integration_api.demo import stream_one_reply

    code = asyncio.run(stream_one_reply(target, message, provider, model, api_key, credential_key, delay_ms))
    raise typer.Exit(code)


@app.command()
def demo() -> None:
    """Start a server on a free port, create an API key, stream a reply from the simulated provider, stop."""
    from integration_api.demo import run_demo

    raise typer.Exit(asyncio.run(run_demo()))


@app.command()
def health(
    target: Annotated[str, typer.Option(help="host:port of the gateway.")] = "127.0.0.1:50051",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 3.0,
) -> None:
    """Ask the gRPC health service; exit 0 when SERVING (the Docker HEALTHCHECK)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(target) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    except grpc.RpcError as error:
        typer.echo(f"unhealthy: {error.code().name}", err=True)
        raise typer.Exit(1) from error
    serving = answer.status == health_pb2.HealthCheckResponse.SERVING
    typer.echo("serving" if serving else health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))
    raise typer.Exit(0 if serving else 1)


@app.command()
def emulate(
    vendor: Annotated[
        str, typer.Argument(help="openai, azure, anthropic, gemini, vertexai, mistral, cohere, replicate")
    ],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8080,
) -> None:
    """Run one vendor's wire-format emulator standalone (for your own tests)."""
    from integration_api.testing.emulators import emulator_for

    async def run() -> None:
        emulator = emulator_for(vendor, port=port)
        await emulator.start()
        typer.echo(f"{vendor} emulator on {emulator.base_url} (Ctrl-C to stop)")
        try:
            await asyncio.Event().wait()
        finally:
            await emulator.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    app()
