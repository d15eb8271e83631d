"""The OpenAI wire-format emulator in its own process, answering every chat completion with `--words` chunks.

It is the shared upstream of scenarios (c), (d), (d2) and (e). It keeps no record of the requests it served (the
test emulator does), so its memory stays flat however long the benchmark runs.

    python -m bench.emulator_server --port 8090 [--words 20]
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

from integration_api.loadtest import run_event_loop
from integration_api.testing.emulators.base import RecordedRequest, Script
from integration_api.testing.emulators.openai import OpenAIEmulator


class BenchEmulator(OpenAIEmulator):
    async def record(self, request: web.Request) -> RecordedRequest:
        recorded = await super().record(request)
        self.requests.clear()
        return recorded


def script(words: int) -> Script:
    """20 words are 20 content chunks, then the finish chunk, the usage chunk and [DONE]."""
    return Script(text=" ".join(f"word{i}" for i in range(words)))


async def serve(port: int, words: int) -> None:
    emulator = BenchEmulator(port=port)
    emulator.default_script = script(words)
    await emulator.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--words", type=int, default=20)
    args = parser.parse_args()
    run_event_loop(serve(args.port, args.words))


if __name__ == "__main__":
    main()
