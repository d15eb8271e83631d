"""Scenario (a): a bare grpc.aio bidi echo with the gateway's message shapes, the limit for Python gRPC here.

It serves only ``UnifiedProviderService.StreamChat``: for each ChatRequest read from a stream it writes
`--words` text frames and one final frame exactly shaped like the gateway's (assistant delta per word; then the
whole message, seven metrics, finish reason, `final`, usage), carrying the request's id. No authentication,
no provider, no tasks: the least work a Python gRPC server can do to produce those frames.

    python -m bench.echo_server --port 50061 [--words 20]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator

import grpc

from integration_api.loadtest import run_event_loop
from integration_api.proto import integration_api_pb2 as pb

SERVICE = "integration_api.UnifiedProviderService"


class EchoServicer:
    def __init__(self, words: int) -> None:
        self.pieces = [f"word{i} " for i in range(words)]
        self.text = "".join(self.pieces)

    def final(self, request_id: str) -> pb.ChatResponse:
        count = len(self.pieces)
        metrics = [
            pb.Metric(name="INPUT_TOKEN", value="20"),
            pb.Metric(name="OUTPUT_TOKEN", value=str(count)),
            pb.Metric(name="TOTAL_TOKEN", value=str(20 + count)),
            pb.Metric(name="TIME_TAKEN", value="1000", description="nanoseconds from request to last frame"),
            pb.Metric(name="FIRST_TOKEN_RECIEVED_TIME", value="100", description="nanoseconds to first output"),
            pb.Metric(name="LLM_REQUEST_ID", value=f"echo-{request_id}"),
            pb.Metric(name="STATUS", value="SUCCESS"),
        ]
        return pb.ChatResponse(
            code=200,
            success=True,
            requestId=request_id,
            data=pb.Message(role="assistant", assistant=pb.AssistantMessage(contents=[self.text])),
            metrics=metrics,
            finishReason="stop",
            final=True,
            usage=pb.Usage(inputTokens=20, outputTokens=count, totalTokens=20 + count),
        )

    async def stream_chat(
        self, request_iterator: AsyncIterator[pb.ChatRequest], context: grpc.aio.ServicerContext
    ) -> None:
        # context.write costs a little less per frame than an async generator's yield.
        async for request in request_iterator:
            request_id = request.requestId
            for piece in self.pieces:
                frame = pb.ChatResponse(
                    code=200,
                    success=True,
                    requestId=request_id,
                    data=pb.Message(role="assistant", assistant=pb.AssistantMessage(contents=(piece,))),
                )
                await context.write(frame)
            await context.write(self.final(request_id))


async def serve(port: int, words: int) -> None:
    server = grpc.aio.server(options=[("grpc.keepalive_permit_without_calls", 1)])
    handler = grpc.stream_stream_rpc_method_handler(
        EchoServicer(words).stream_chat,
        request_deserializer=pb.ChatRequest.FromString,
        response_serializer=pb.ChatResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"StreamChat": handler})])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--words", type=int, default=20)
    args = parser.parse_args()
    run_event_loop(serve(args.port, args.words))


if __name__ == "__main__":
    main()
