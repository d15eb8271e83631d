"""The side-by-side benchmark of the gateway (``make bench``, ``python -m bench.run``); see bench/README.md."""
