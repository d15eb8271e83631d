"""Coverage-guided fuzzing of StreamChat's request decoding and validation with atheris (libFuzzer).

    .venv/bin/python -m tests.fuzz.fuzz_requests -max_total_time=60          # what `make fuzz` runs
    .venv/bin/python -m tests.fuzz.fuzz_requests crash-<sha1>                # replay one crash

Every argument is libFuzzer's. Without an input, the corpus is build/fuzz/corpus/: the seeds of
`tests.fuzz.seeds` are (re)written there at each run and libFuzzer adds the inputs it finds (build/ is never
committed; `make clean` removes it). Crash, timeout and out-of-memory inputs are written to build/fuzz/ unless
`-artifact_prefix=` says otherwise. The exit status is
non-zero when an input broke an invariant of `tests.fuzz.harness` (or took longer than `-timeout`, 10 s here).

Coverage comes from our Python code (the harness, integration_api.requests and what it calls, instrumented at
import); the protobuf decoder itself is compiled C and is not instrumented, which is why the seeds are structured
ChatRequests rather than empty input.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]
except ImportError:  # atheris ships wheels for Linux x86-64 only (see the `dev` extra in pyproject.toml)
    sys.exit("atheris is not installed for this platform: `make test` still runs the harness (tests/fuzz/)")

with atheris.instrument_imports(include=["integration_api", "providers", "tests.fuzz"]):
    from tests.fuzz import harness
    from tests.fuzz.seeds import write_corpus

ARTIFACTS = Path("build/fuzz")
CORPUS = ARTIFACTS / "corpus"
DEFAULTS = ("-timeout=10", "-max_len=16384", "-rss_limit_mb=2048")


def _one_input(data: bytes) -> None:
    harness.check_one_input(data)


def main(argv: list[str]) -> None:
    flags = [arg for arg in argv[1:] if arg.startswith("-")]
    inputs = [arg for arg in argv[1:] if not arg.startswith("-")]
    flags += [flag for flag in DEFAULTS if not any(arg.startswith(flag.split("=")[0] + "=") for arg in flags)]
    if not any(flag.startswith("-artifact_prefix=") for flag in flags):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        flags.append(f"-artifact_prefix={ARTIFACTS}/")
    if not inputs:
        write_corpus(CORPUS)
        inputs = [str(CORPUS)]
    atheris.Setup([argv[0], *flags, *inputs], _one_input)
    atheris.Fuzz()  # never returns: libFuzzer exits with the run's status


if __name__ == "__main__":
    main(sys.argv)
