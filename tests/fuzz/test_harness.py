"""The fuzzing harness in the ordinary suite: the seeds, their mutations and random bytes, without atheris.

`make fuzz` searches for new inputs with coverage guidance; this only makes sure the harness and its seeds keep
working (and keeps every input that once broke an invariant, in test_requests.py), at no cost to `make test`.
"""

from __future__ import annotations

import random
from pathlib import Path

from integration_api.requests import UndecodableRequest, decode_chat_request
from tests.fuzz.harness import check_one_input
from tests.fuzz.seeds import seed_messages, write_corpus

RANDOM_INPUTS = 300
MUTATIONS_PER_SEED = 100


def _decodable(raw: bytes) -> bool:
    try:
        decode_chat_request(raw)
    except UndecodableRequest:
        return False
    return True


def test_the_seeds_reach_both_sides_of_decoding() -> None:
    seeds = seed_messages()
    assert any(_decodable(raw) for raw in seeds)
    assert not all(_decodable(raw) for raw in seeds)
    for raw in seeds:
        check_one_input(raw)


def _mutate(rng: random.Random, raw: bytes, other: bytes) -> bytes:
    data = bytearray(raw)
    choice = rng.randrange(4)
    if choice == 0 and data:  # flip one bit
        position = rng.randrange(len(data))
        data[position] ^= 1 << rng.randrange(8)
    elif choice == 1:  # cut short
        del data[rng.randrange(len(data) + 1) :]
    elif choice == 2:  # splice another seed in (repeated and interleaved fields)
        position = rng.randrange(len(data) + 1)
        data[position:position] = other[: rng.randrange(len(other) + 1)]
    else:  # overwrite a few bytes
        for _ in range(rng.randrange(1, 4)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def test_mutated_seeds_and_random_bytes_break_no_invariant() -> None:
    rng = random.Random(10)
    seeds = seed_messages()
    for raw in seeds:
        for _ in range(MUTATIONS_PER_SEED):
            check_one_input(_mutate(rng, raw, rng.choice(seeds)))
    for _ in range(RANDOM_INPUTS):
        check_one_input(rng.randbytes(rng.randrange(64)))


def test_write_corpus_writes_one_file_per_seed(tmp_path: Path) -> None:
    paths = write_corpus(tmp_path / "corpus")
    assert sorted(path.read_bytes() for path in paths) == sorted(seed_messages())
