"""``integration-api bench``: load-test any deployment of the gateway and report throughput and latency.

Only typer is imported at module level, so registering the command keeps ``integration-api --help`` fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def _parse_json(text: str, what: str) -> Any:
    source = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{what} is not valid JSON: {exc}") from exc


def _parameters(pairs: list[str]) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--param takes KEY=VALUE, got {pair!r}")
        try:
            parameters[key] = json.loads(raw)
        except json.JSONDecodeError:
            parameters[key] = raw  # plain text needs no quotes
    return parameters


def bench(
    target: Annotated[str, typer.Option(help="host:port of the gateway.")] = "127.0.0.1:50051",
    provider: Annotated[str, typer.Option(help="providerName of every request.")] = "simulated",
    model: Annotated[str, typer.Option(help="model.name of every request.")] = "",
    credential_json: Annotated[
        str, typer.Option(help='The vendor credential as JSON (or @file.json), e.g. \'{"key": "sk-..."}\'.')
    ] = "{}",
    param: Annotated[
        list[str] | None, typer.Option(help="A model parameter KEY=VALUE (JSON value or text); repeatable.")
    ] = None,
    api_key: Annotated[str | None, typer.Option(envvar="INTEGRATION_API_KEY", help="Send as x-api-key.")] = None,
    service_token: Annotated[
        str | None,
        typer.Option(envvar="INTEGRATION_API_SERVICE_TOKEN", help="Send as x-internal-service-key (a JWT)."),
    ] = None,
    tls: Annotated[bool, typer.Option(help="Connect with TLS.")] = False,
    root_cert: Annotated[Path | None, typer.Option(help="PEM roots to verify the server with (implies --tls).")] = None,
    server_name: Annotated[str | None, typer.Option(help="TLS name to verify instead of the target host.")] = None,
    streams: Annotated[int, typer.Option(min=1, help="Concurrent StreamChat streams.")] = 1,
    requests_per_stream: Annotated[int | None, typer.Option(min=1, help="Stop each stream after N requests.")] = None,
    concurrency_per_stream: Annotated[int, typer.Option(min=1, help="Requests in flight on each stream.")] = 1,
    prompt_words: Annotated[int, typer.Option(min=0, help="Words in the user message.")] = 20,
    duration: Annotated[
        float | None, typer.Option(help="Seconds to measure after the warm-up (default 10 without --count).")
    ] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after N requests in all (warm-up included).")] = None,
    warmup: Annotated[float, typer.Option(min=0, help="Seconds of load before measuring.")] = 0.0,
    timeout: Annotated[float, typer.Option(help="Seconds before a request counts as 'client TIMEOUT'.")] = 60.0,
    processes: Annotated[int, typer.Option(min=1, help="Client processes to spread the streams over.")] = 1,
    json_output: Annotated[bool, typer.Option("--json", help="Print the results as JSON instead of a table.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a live progress bar (on stderr).")] = True,
) -> None:
    """Load-test a gateway: open streams, send requests, report req/s, tokens/s, latency percentiles, errors."""
    from integration_api.loadtest._cli_run import run_command
    from integration_api.loadtest._config import LoadConfig

    metadata: list[tuple[str, str]] = []
    if api_key:
        metadata.append(("x-api-key", api_key))
    if service_token:
        metadata.append(("x-internal-service-key", service_token))
    credential = _parse_json(credential_json, "--credential-json")
    if not isinstance(credential, dict):
        raise typer.BadParameter("--credential-json must be a JSON object")
    try:
        config = LoadConfig(
            target=target,
            provider=provider,
            model=model,
            credential=credential,
            parameters=_parameters(param or []),
            metadata=tuple(metadata),
            tls=tls or root_cert is not None,
            root_cert=root_cert.read_bytes() if root_cert is not None else None,
            server_name=server_name,
            streams=streams,
            requests_per_stream=requests_per_stream,
            concurrency_per_stream=concurrency_per_stream,
            prompt_words=prompt_words,
            duration_s=duration,
            count=count,
            warmup_s=warmup,
            request_timeout_s=timeout,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    raise typer.Exit(run_command(config, processes, json_output=json_output, show_progress=progress))
