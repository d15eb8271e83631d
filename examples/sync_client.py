"""The synchronous client: the same stream and calls, for code without asyncio.

Run it with the project's virtualenv (``make venv``; another Python lacks ``integration_api``), from the
repository root, against a running gateway (examples/README.md shows how to start one)::

    INTEGRATION_API_TARGET=127.0.0.1:50051 INTEGRATION_API_KEY=ia_... \\
        .venv/bin/python examples/sync_client.py
"""

from __future__ import annotations

from integration_api.client import Client


def main(target: str, api_key: str | None) -> str:
    with Client(target, api_key=api_key) as client, client.stream("simulated") as stream:
        for text in stream.chat([{"role": "user", "content": "No event loop in sight."}]).text_stream:
            print(text, end="", flush=True)
        print()
        return client.chat([{"role": "user", "content": "And a unary call."}], provider="simulated").text


if __name__ == "__main__":
    import os

    print(main(os.environ.get("INTEGRATION_API_TARGET", "127.0.0.1:50051"), os.environ.get("INTEGRATION_API_KEY")))
