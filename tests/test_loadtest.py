"""The load generator behind `integration-api bench` and bench/, against real gateways on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

import integration_api.loadtest as loadtest
from integration_api.loadtest import (
    GrpcLoad,
    Histogram,
    LoadConfig,
    LoadStats,
    bench_command,
    run_load,
    run_processes,
)
from tests.conftest import RunningGateway, make_settings, start_gateway

ROOT = Path(__file__).resolve().parent.parent
REPLY = "one two three four five"


def _config(gateway: RunningGateway, **overrides: object) -> LoadConfig:
    values: dict[str, object] = {
        "target": gateway.server.address,
        "metadata": gateway.metadata,
        "parameters": {"simulated_reply": REPLY},
        **overrides,
    }
    return LoadConfig(**values)  # type: ignore[arg-type]


def _assert_latencies_sane(stats: LoadStats) -> None:
    for histogram in (stats.first_frame_us, stats.final_frame_us):
        p50, p90, p99 = (histogram.percentile(p) for p in (50, 90, 99))
        assert 0 < histogram.minimum <= p50 <= p90 <= p99 <= histogram.maximum
    assert stats.first_frame_us.percentile(50) <= stats.final_frame_us.percentile(50)


async def test_counts_frames_tokens_and_latency(gateway: RunningGateway) -> None:
    stats = await run_load(_config(gateway, streams=3, concurrency_per_stream=2, count=30))

    assert stats.requests == 30
    assert not stats.errors
    assert stats.frames == 30 * 6  # five words, one frame each, then the final frame
    assert stats.output_tokens == 30 * 5
    assert stats.first_frame_us.count == stats.final_frame_us.count == 30
    _assert_latencies_sane(stats)
    summary = stats.summary()
    assert summary["requests_per_s"] > 0
    assert summary["first_frame_ms"]["p99"] <= summary["final_frame_ms"]["max"]
    assert summary["client_cpu_s"] > 0


async def test_requests_per_stream_bound(gateway: RunningGateway) -> None:
    stats = await run_load(_config(gateway, streams=4, requests_per_stream=3))

    assert stats.requests == 12


@pytest.mark.parametrize(
    ("status", "code"), [(400, "400 INVALID_ARGUMENT"), (503, "503 UNAVAILABLE"), (404, "404 NOT_FOUND")]
)
async def test_errors_are_counted_by_code(gateway: RunningGateway, status: int, code: str) -> None:
    # After a first delta the gateway does not retry, so every request fails at once with this code.
    parameters = {"simulated_reply": REPLY, "simulated_error": status, "simulated_error_after": 1}
    stats = await run_load(_config(gateway, streams=2, count=8, parameters=parameters))

    assert stats.requests == 0
    assert stats.errors == {code: 8}
    assert stats.summary()["error_count"] == 8


async def test_a_refused_stream_is_one_error_and_no_retry(gateway: RunningGateway) -> None:
    started = time.monotonic()
    stats = await run_load(_config(gateway, streams=3, count=50, metadata=(("x-api-key", "ia_wrong_key"),)))

    assert stats.requests == 0
    assert stats.errors == {"stream UNAUTHENTICATED": 3}
    assert time.monotonic() - started < 5


async def test_slow_requests_time_out_and_are_cancelled(gateway: RunningGateway) -> None:
    parameters = {"simulated_reply": REPLY, "simulated_delay_ms": 2000}
    stats = await run_load(_config(gateway, count=2, parameters=parameters, request_timeout_s=0.2))

    assert stats.errors == {"client TIMEOUT": 2}


async def test_processes_share_one_window_and_merge(gateway: RunningGateway) -> None:
    parts = _config(gateway, streams=4, count=40).split(2)
    assert [(p.streams, p.count) for p in parts] == [(2, 20), (2, 20)]
    marks: list[str] = []

    stats = await asyncio.to_thread(run_processes, [GrpcLoad(p) for p in parts], 0.0, None, on_mark=marks.append)

    assert stats.requests == 40
    assert stats.output_tokens == 40 * 5
    assert marks == ["start", "end"]
    _assert_latencies_sane(stats)


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loadtest")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_file.write_bytes(private)
    return cert_file, key_file


async def test_tls_with_the_servers_root_certificate(tmp_path: Path) -> None:
    cert_file, key_file = _certificate(tmp_path)
    gateway = await start_gateway(make_settings(tmp_path, tls_cert_file=cert_file, tls_key_file=key_file))
    try:
        stats = await run_load(_config(gateway, count=5, tls=True, root_cert=cert_file.read_bytes()))
    finally:
        await gateway.channel.close()
        await gateway.server.stop()

    assert stats.requests == 5


def test_public_surface_resolves() -> None:
    assert all(getattr(loadtest, name) is not None for name in loadtest.__all__)
    assert bench_command.__name__ == "bench"


def test_histogram_percentiles_are_within_two_percent() -> None:
    values = [float(v) for v in range(1, 10_001)]
    halves = Histogram(), Histogram()
    for index, value in enumerate(values):
        halves[index % 2].record(value)
    merged = Histogram.from_dict(halves[0].to_dict())
    merged.merge(halves[1])

    assert merged.count == 10_000
    assert merged.mean == pytest.approx(5000.5)
    for percent, exact in ((50, 5000), (90, 9000), (99, 9900)):
        assert merged.percentile(percent) == pytest.approx(exact, rel=0.02)
    assert Histogram().percentile(99) == 0.0


def test_stats_survive_the_trip_between_processes() -> None:
    stats = LoadStats()
    stats.record_success(0, 1_000_000, 5_000_000, 21, 20)
    stats.record_error("503 UNAVAILABLE", 6_000_000)

    copy = LoadStats.from_dict(json.loads(json.dumps(stats.to_dict())))

    assert copy.summary() == stats.summary()


def test_cli_json_against_a_gateway_process(tmp_path: Path) -> None:
    from bench.servers import start_gateway

    app = typer.Typer()
    app.command("bench")(bench_command)
    app.command("other")(lambda: None)  # two commands, so "bench" is a subcommand as in integration-api
    gateway = start_gateway(tmp_path / "logs")
    try:
        arguments = ["bench", "--target", gateway.target, "--api-key", gateway.api_key, "--streams", "2"]
        arguments += ["--count", "10", "--param", f"simulated_reply={REPLY}", "--json"]
        result = CliRunner().invoke(app, arguments)
        failing = CliRunner().invoke(app, [*arguments[:3], "--api-key", "ia_wrong_key", "--count", "4"])
    finally:
        gateway.stop()

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["results"]["requests"] == 10
    assert report["results"]["tokens_per_s"] > 0
    assert report["settings"]["auth"] == ["x-api-key"]
    assert gateway.api_key not in result.stdout
    assert failing.exit_code == 1
    assert "UNAUTHENTICATED" in failing.stdout


@pytest.mark.timeout(90)
def test_bench_quick_smoke(tmp_path: Path) -> None:
    """`python -m bench.run --quick --only a,b`: about 20 s on two cores."""
    command = [sys.executable, "-m", "bench.run", "--quick", "--only", "a,b", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=85, check=False)

    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "latest.json").read_text())
    rows = {(row["scenario"], row["streams"]): row for row in result["rows"]}
    assert set(rows) == {("a", 1), ("a", 50), ("b", 1), ("b", 50)}
    assert all(row["requests"] > 0 and row["error_count"] == 0 for row in rows.values())
    assert all(row["server_cpu_us_per_request"] > 0 for row in rows.values())
    targets = {check["name"]: check for check in result["targets"]}
    assert targets["(b)/(a) requests/s, 1 stream"]["value"] > 0
    assert "## Throughput" in (tmp_path / "latest.md").read_text()
