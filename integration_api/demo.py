"""The demo: a server plus a client streaming a reply from the built-in `simulated` provider, no keys needed."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import grpc
from google.protobuf import any_pb2, struct_pb2

from integration_api.proto import integration_api_pb2 as pb
from integration_api.proto import integration_api_pb2_grpc as pb_grpc

DEMO_MESSAGE = "Hello from integration-api! This reply is streamed word by word over one gRPC stream."


def _value(value: str | float) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(
        struct_pb2.Value(string_value=value) if isinstance(value, str) else struct_pb2.Value(number_value=value)
    )
    return packed


def build_request(message: str, provider: str, model: str, credential_key: str | None, delay_ms: int) -> pb.ChatRequest:
    parameters: dict[str, str | float] = {}
    if model:
        parameters["model.name"] = model
    if delay_ms and provider == "simulated":
        parameters["model.simulated_delay_ms"] = delay_ms
    credential = struct_pb2.Struct()
    if credential_key:
        credential.update({"key": credential_key})
    return pb.ChatRequest(
        requestId="demo-1",
        providerName=provider,
        credential=pb.Credential(value=credential),
        conversations=[pb.Message(role="user", user=pb.UserMessage(content=message))],
        modelParameters={key: _value(value) for key, value in parameters.items()},
    )


async def stream_one_reply(
    target: str,
    message: str,
    provider: str,
    model: str,
    api_key: str | None,
    credential_key: str | None,
    delay_ms: int,
) -> int:
    """Send one request on a StreamChat stream and print the reply as it arrives; returns an exit code."""
    metadata = (("x-api-key", api_key),) if api_key else ()
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(target) as channel:
        stream = pb_grpc.UnifiedProviderServiceStub(channel).StreamChat(metadata=metadata)
        await stream.write(build_request(message, provider, model, credential_key, delay_ms))
        await stream.done_writing()
        try:
            async for frame in stream:
                if not frame.final:
                    sys.stdout.write("".join(frame.data.assistant.contents))
                    sys.stdout.flush()
                elif frame.success:
                    metrics = {metric.name: metric.value for metric in frame.metrics}
                    first_ms = int(metrics["FIRST_TOKEN_RECIEVED_TIME"]) / 1e6
                    total_ms = 1000 * (time.perf_counter() - started)
                    usage = frame.usage
                    print(f"\n\n[{frame.finishReason}] {usage.inputTokens} tokens in, {usage.outputTokens} out;")
                    print(f"first token after {first_ms:.1f} ms, {total_ms:.0f} ms in all")
                else:
                    print(f"\nerror {frame.code} {frame.error.status}: {frame.error.errorMessage}", file=sys.stderr)
                    return 1
        except grpc.aio.AioRpcError as error:
            print(f"\nthe gateway refused the stream: {error.code().name}: {error.details()}", file=sys.stderr)
            return 2
    return 0


async def run_demo() -> int:
    """Start a gateway on a free port with a fresh key store, create a key, stream a reply, stop."""
    from auth import ApiKeyStore
    from integration_api.server import GatewayServer
    from integration_api.settings import Settings

    with tempfile.TemporaryDirectory(prefix="integration-api-demo-") as data_dir:
        settings = Settings(host="127.0.0.1", port=0, data_dir=Path(data_dir))
        server = GatewayServer(settings)
        port = await server.start()
        api_key, _ = ApiKeyStore(settings.data_dir).create(name="demo", organization_id="demo", project_id="demo")
        print(
            f"integration-api is serving on 127.0.0.1:{port}; created a demo API key; asking the simulated provider:\n"
        )
        try:
            return await stream_one_reply(f"127.0.0.1:{port}", DEMO_MESSAGE, "simulated", "", api_key, None, 60)
        finally:
            await server.drain_and_stop(1.0)
