# One task runner for the project. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The client's runtime wheels, fetched at install time so tests/test_packaging.py can install the client offline.
WHEELHOUSE := $(VENV)/wheelhouse
PROTO_SRC := protos/integration_api/proto/integration_api.proto
PROTO_OUT := integration_api/proto

.PHONY: help venv wheelhouse browser demo test lint typecheck protos protos-check check fuzz bench bench-soak bench-peers cluster cluster-stop clean

help:
	@grep -E '^[a-z-]+:.*?## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# Only what a bare `pip install integration-api` resolves to (no extras): the packaging test installs the wheel it
# builds from these with --no-index, so a server-only dependency leaking into the client install fails there.
$(WHEELHOUSE)/.complete: $(VENV)/.installed
	rm -rf $(WHEELHOUSE)
	$(BIN)/python -m pip download -q --no-build-isolation -d $(WHEELHOUSE) .
	touch $@

wheelhouse: $(WHEELHOUSE)/.complete ## Download the client's runtime wheels (for tests/test_packaging.py).

# The official `openai` npm package for tests/http/test_openai_js.py (which skips, saying so, where node is missing).
JS_TESTS := tests/http/js
$(JS_TESTS)/node_modules/.installed: $(JS_TESTS)/package.json $(JS_TESTS)/package-lock.json
	@if command -v npm >/dev/null; then cd $(JS_TESTS) && npm ci --no-audit --no-fund && touch node_modules/.installed; \
	else echo "npm not found: tests/http/test_openai_js.py will be skipped"; fi

venv: $(VENV)/.installed $(WHEELHOUSE)/.complete $(JS_TESTS)/node_modules/.installed ## Create .venv, install the package with its dev tools.

demo: venv ## Start a server and stream a reply from the built-in simulated provider.
	$(BIN)/integration-api demo

test: venv ## Run the whole test suite.
	$(BIN)/pytest

# Playwright (the dev extra) drives the system's chromium; it never downloads a browser (no `playwright install`).
browser: ## Install Debian's chromium for the browser test, tests/http/test_page.py (needs root; CI runs it).
	bash .ci/setup.sh

lint: venv ## ruff: lint and formatting.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# tests/ has no __init__.py (pytest's importlib mode): --explicit-package-bases names its modules tests.x from the
# repository root, as the tests import them.
typecheck: venv ## mypy --strict on our code (generated code excluded), and on tests/ with pyproject's relaxations.
	$(BIN)/mypy --explicit-package-bases integration_api providers auth tests

protos: venv ## Regenerate integration_api/proto from protos/ (the only way generated code changes).
	$(BIN)/python -m grpc_tools.protoc -Iprotos \
		--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
		--python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. $(PROTO_SRC)

protos-check: venv ## Fail when the generated code differs from what protos/ produces.
	@tmp=$$(mktemp -d) && cp -r $(PROTO_OUT) $$tmp/before && $(MAKE) -s protos && \
	if ! diff -r $$tmp/before $(PROTO_OUT) -x __pycache__ -x __init__.py; then \
		echo "generated code is out of date with protos/: run 'make protos' and commit the result"; exit 1; fi

check: lint typecheck protos-check test fuzz ## Everything CI runs.

FUZZ_SECONDS ?= 60

fuzz: venv ## Fuzz StreamChat's request decoding for FUZZ_SECONDS (tests/fuzz/); crashes go to build/fuzz/.
	$(BIN)/python -m tests.fuzz.fuzz_requests -max_total_time=$(FUZZ_SECONDS)

bench: venv ## The side-by-side benchmark (bench/README.md).
	$(BIN)/python -m bench.run

bench-soak: venv ## Gateway memory over a 10-minute run of `integration-api bench` (bench/README.md).
	$(BIN)/python -m bench.soak

PEERS_VENV := bench/.peers-venv
LITELLM ?= litellm[proxy]==1.106.2

bench-peers: ## Install the peer gateways bench/ compares with (LiteLLM proxy) into bench/.peers-venv.
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install -q '$(LITELLM)'

cluster: venv ## 2 replicas behind nginx (grpc_pass) on 127.0.0.1, with Redis; prints the address and a key.
	$(BIN)/python -m deploy.cluster.cluster up

cluster-stop: ## Stop what `make cluster` started (by its recorded PIDs).
	$(BIN)/python -m deploy.cluster.cluster down

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
