"""One of several processes writing the data directory's SQLite stores at once (tests/usage/test_concurrent.py).

Usage: python -m tests.usage.concurrent_writer DATA_DIR NAME CREDENTIALS_KEY. It prints "ready", waits for a line on
stdin (so that every process starts at the same moment), then opens the stores and interleaves: key creations (each
verified), usage batches, stored credentials, sessions. It prints one JSON line of what it wrote, or exits 1 with the error.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from auth.api_keys import ApiKeyStore
from integration_api.credentials import CredentialCipher, CredentialStore
from integration_api.sessions.sqlite_store import SqliteSessionStore
from integration_api.sessions.store import Owner, Session
from integration_api.usage import UsageRecord
from integration_api.usage.sqlite_store import SqliteUsageStore

ROUNDS = 40
BATCH = 50


def usage_record(name: str, index: int) -> UsageRecord:
    return UsageRecord(
        time.time(),
        f"{name}-{index}",
        name,
        "org",
        name,
        None,
        None,
        "api_key",
        "StreamChat",
        "simulated",
        "",
        "OK",
        200,
        1,
        2,
    )


async def main(data_dir: Path, name: str, credentials_key: str) -> dict[str, int]:
    keys = ApiKeyStore(data_dir)  # every process opens (and migrates) the stores at the same moment
    credentials = CredentialStore(data_dir, CredentialCipher([credentials_key]))
    usage = SqliteUsageStore(data_dir)
    await usage.start()
    sessions = SqliteSessionStore(data_dir, ttl_s=3600)
    written = {"keys": 0, "usage": 0, "credentials": 0, "sessions": 0}
    try:
        for round_ in range(ROUNDS):
            key, record = await asyncio.to_thread(keys.create, f"{name}-{round_}", "org", name)
            principal = await asyncio.to_thread(keys.verify, key)
            assert principal is not None and principal.key_id == record.key_id, "a new key does not verify"
            written["keys"] += 1
            await usage.write([usage_record(name, round_ * BATCH + i) for i in range(BATCH)])
            written["usage"] += BATCH
            if round_ % 4 == 0:
                await asyncio.to_thread(credentials.add, f"{name}-{round_}", "openai", {"key": f"sk-{round_}"})
                written["credentials"] += 1
            now = time.time()
            await sessions.create(Session(f"{name}-{round_}", Owner("org", name), "simulated", last_used_at=now), now)
            written["sessions"] += 1
    finally:
        await usage.aclose()
        await sessions.aclose()
    return written


if __name__ == "__main__":
    directory, process_name, cipher_key = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(asyncio.run(main(directory, process_name, cipher_key))), flush=True)
