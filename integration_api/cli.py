"""The `integration-api` command: serve, chat (a one-shot demo client), demo, health, keys, emulate, bench, usage."""

from __future__ import annotations

import asyncio
import ipaddress
import sys
from pathlib import Path
from typing import Annotated

import typer

from auth.cli import keys_app, projects_app
from integration_api import __version__
from integration_api.cli_support import BAD_SETTINGS_EXIT_CODE, FLAG, load_settings
from integration_api.credentials.cli import credentials_app
from integration_api.loadtest import bench_command
from integration_api.routing.cli import routes_command
from integration_api.settings import Settings
from integration_api.usage.cli import usage_command

app = typer.Typer(help="A gRPC gateway to every major LLM provider.", no_args_is_help=True)
app.add_typer(keys_app, name="keys", help="Create, list and revoke API keys; issue service tokens.")
app.add_typer(projects_app, name="projects", help="Set and list project-level limits and budgets.")
app.add_typer(credentials_app, name="credentials", help="Store vendor credentials for requests to reference.")
app.command(name="bench")(bench_command)
app.command(name="usage")(usage_command)
app.command(name="routes")(routes_command)

# Help texts say "(env X)", never "[env X]": typer renders help as Rich markup, which swallows square brackets.
ConfigOption = Annotated[
    Path | None, typer.Option(help="A TOML config file, below flags and environment variables in precedence.")
]
TlsOption = Annotated[bool | None, typer.Option("--tls/--no-tls", metavar=FLAG, help="Connect with TLS.")]
RootCertOption = Annotated[
    Path | None,
    typer.Option(help="PEM root certificates to verify the gateway with (implies --tls); default: the system's."),
]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"integration-api {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", metavar=FLAG, callback=_print_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """A gRPC gateway to every major LLM provider."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (env INTEGRATION_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port, 0 for any free one (env INTEGRATION_API_PORT).")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the key store lives (env INTEGRATION_API_DATA_DIR).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Server processes sharing the port (env INTEGRATION_API_WORKERS).")
    ] = None,
    auth_disabled: Annotated[
        bool | None,
        typer.Option(
            "--auth-disabled/--auth-enabled",
            metavar=FLAG,
            help="Accept unauthenticated clients, or insist on authentication "
            "(env INTEGRATION_API_AUTH_DISABLED; default: authentication on).",
        ),
    ] = None,
    config: ConfigOption = None,
    no_http: Annotated[
        bool,
        typer.Option(
            "--no-http",
            help="Serve gRPC only: no OpenAI-compatible API, bridge or chat page (env INTEGRATION_API_HTTP_PORT=0).",
        ),
    ] = False,
) -> None:
    """Run the gateway until SIGTERM/SIGINT, then drain in-flight requests."""
    settings = load_settings(
        config,
        host=host,
        port=port,
        data_dir=data_dir,
        workers=workers,
        auth_disabled=auth_disabled,
        http_port=0 if no_http else None,
    )
    from integration_api.logs import configure_logging
    from integration_api.workers import run_workers

    configure_logging(settings)
    raise typer.Exit(run_workers(settings))


@app.command()
def chat(
    message: Annotated[
        str | None, typer.Argument(help="The user message; without one, an interactive chat (/help in it).")
    ] = None,
    target: Annotated[
        str, typer.Option(envvar="INTEGRATION_API_TARGET", help="host:port of the gateway.")
    ] = "127.0.0.1:50051",
    provider: Annotated[str, typer.Option(help="Provider name.")] = "simulated",
    model: Annotated[str, typer.Option(help="model.name")] = "",
    api_key: Annotated[
        str | None, typer.Option(envvar="INTEGRATION_API_KEY", help="A project API key, sent as x-api-key.")
    ] = None,
    service_token: Annotated[
        str | None,
        typer.Option(envvar="INTEGRATION_API_SERVICE_TOKEN", help="A service JWT, sent as x-internal-service-key."),
    ] = None,
    tls: TlsOption = None,
    root_cert: RootCertOption = None,
    credential_key: Annotated[str | None, typer.Option(envvar="PROVIDER_API_KEY", help="The vendor key.")] = None,
    delay_ms: Annotated[int, typer.Option(help="simulated provider: delay per word.")] = 0,
    system: Annotated[str, typer.Option(help="Interactive: the session's system prompt.")] = "",
    param: Annotated[
        list[str] | None,
        typer.Option(help="Interactive: NAME=VALUE, sent as model.NAME with every request (repeatable)."),
    ] = None,
    history: Annotated[Path | None, typer.Option(help="Interactive: keep typed lines in this file.")] = None,
    ping_interval: Annotated[
        float, typer.Option(help="Interactive: seconds between liveness PINGs of an idle stream (0: none).")
    ] = 15.0,
) -> None:
    """Stream one reply to the terminal, or, without a message, chat interactively on a session."""
    from integration_api.demo import Connection, stream_one_reply

    if api_key and service_token:
        typer.echo("error: pass --api-key or --service-token, not both", err=True)
        raise typer.Exit(BAD_SETTINGS_EXIT_CODE)
    if root_cert is not None and not root_cert.is_file():
        typer.echo(f"error: --root-cert {root_cert}: no such file", err=True)
        raise typer.Exit(BAD_SETTINGS_EXIT_CODE)
    connection = Connection(target, api_key=api_key, service_token=service_token, tls=tls, root_certificates=root_cert)
    if message is None:
        from integration_api.repl import ReplOptions, run_repl

        parameters = _parameters(param or [], simulated_delay_ms=delay_ms if provider == "simulated" else 0)
        options = ReplOptions(connection, provider, model, system, parameters, credential_key, ping_interval, history)
        raise typer.Exit(asyncio.run(run_repl(options)))
    code = asyncio.run(stream_one_reply(connection, message, provider, model, credential_key, delay_ms))
    raise typer.Exit(code)


def _parameters(items: list[str], *, simulated_delay_ms: int) -> dict[str, object]:
    """The REPL's request parameters from ``--param NAME=VALUE`` items (and ``--delay-ms``); exit 2 on a bad one."""
    from integration_api.repl import parse_parameters

    try:
        parameters = parse_parameters(items)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(BAD_SETTINGS_EXIT_CODE) from error
    if simulated_delay_ms:
        parameters.setdefault("simulated_delay_ms", simulated_delay_ms)
    return parameters


@app.command()
def demo() -> None:
    """Start a server on a free port, create an API key, stream a reply from the simulated provider, stop."""
    from integration_api.demo import run_demo

    raise typer.Exit(asyncio.run(run_demo()))


def _local_address(settings: Settings) -> str:
    """Where this machine's gateway answers: its listening host (loopback for a wildcard) and port."""
    host = settings.host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name
    return f"{host}:{settings.port}"


@app.command()
def health(
    target: Annotated[
        str | None,
        typer.Option(
            help="host:port of the gateway; default: this machine's, from the server's settings "
            "(INTEGRATION_API_HOST, 127.0.0.1 for 0.0.0.0, and INTEGRATION_API_PORT)."
        ),
    ] = None,
    tls: Annotated[
        bool | None,
        typer.Option(
            "--tls/--no-tls",
            metavar=FLAG,
            help="Connect with TLS; default: when the server's settings have INTEGRATION_API_TLS_CERT_FILE.",
        ),
    ] = None,
    root_cert: Annotated[
        Path | None,
        typer.Option(
            help="PEM root certificates to verify the gateway with (implies --tls); default with TLS from the "
            "settings: INTEGRATION_API_TLS_CERT_FILE itself, so a self-signed certificate verifies.",
        ),
    ] = None,
    server_name: Annotated[
        str | None,
        typer.Option(
            envvar="INTEGRATION_API_TLS_SERVER_NAME",
            help="The name the certificate must carry, when it is not the target's host (e.g. a certificate for "
            "gateway.example.com checked on 127.0.0.1). The certificate is always verified.",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 3.0,
    config: ConfigOption = None,
) -> None:
    """Ask the gRPC health service; exit 0 when SERVING (the Docker HEALTHCHECK)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if target is None or (tls is None and root_cert is None):
        settings = load_settings(config)
        target = target or _local_address(settings)
        if tls is None and root_cert is None and settings.tls_cert_file is not None:
            root_cert = settings.tls_cert_file
    if tls is False and root_cert is not None:
        typer.echo("error: --root-cert needs TLS, but --no-tls was given", err=True)
        raise typer.Exit(BAD_SETTINGS_EXIT_CODE)
    try:
        roots = root_cert.read_bytes() if root_cert is not None else None
    except OSError as error:
        typer.echo(f"error: --root-cert {root_cert}: {error.strerror}", err=True)
        raise typer.Exit(BAD_SETTINGS_EXIT_CODE) from error
    if tls or roots is not None:
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(roots), options=options)
    else:
        channel = grpc.insecure_channel(target)
    try:
        with channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    except grpc.RpcError as error:
        typer.echo(f"unhealthy: {error.code().name}: {error.details()}", err=True)
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
