"""Embeddings: embed documents and a query, then rank the documents by cosine similarity to it.

Run it with the project's virtualenv (``make venv``; another Python lacks ``integration_api``), from the
repository root, against a running gateway (examples/README.md shows how to start one)::

    INTEGRATION_API_TARGET=127.0.0.1:50051 INTEGRATION_API_KEY=ia_... \\
        .venv/bin/python examples/embeddings.py
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from integration_api.client import AsyncClient

DOCUMENTS = [
    "The gateway keeps one persistent gRPC stream per backend.",
    "Bread needs flour, water, salt and time.",
    "Requests on a stream are multiplexed by request id.",
]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)) or 1.0)


async def main(target: str, api_key: str | None, query: str = DOCUMENTS[2]) -> list[tuple[float, str]]:
    async with AsyncClient(target, api_key=api_key) as client:
        documents = await client.embed(DOCUMENTS, provider="simulated", model="simulated-embedding")
        [query_vector] = (await client.embed(query, provider="simulated", model="simulated-embedding")).vectors
    scored = zip(documents.vectors, DOCUMENTS, strict=True)
    ranked = sorted(((cosine(query_vector, vector), text) for vector, text in scored), reverse=True)
    for score, text in ranked:
        print(f"{score:+.3f}  {text}")
    return ranked


if __name__ == "__main__":
    import os

    asyncio.run(
        main(os.environ.get("INTEGRATION_API_TARGET", "127.0.0.1:50051"), os.environ.get("INTEGRATION_API_KEY"))
    )
