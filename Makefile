# Two entry points for people (README Quick start) and CI:
#   make run   - the gateway with the bundled fake signers, on loopback
#   make test  - lint, type checks and the whole test suite
# Each target builds its own virtualenv from requirements.lock first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench soak lock clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/signing-gateway demo

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

soak: $(STAMP)
	$(BIN)/python -m bench.soak $(BENCH_ARGS)

# Regenerate the lock file after changing dependencies in pyproject.toml. The dev/test lock
# includes the otel extra so the tracing tests run; the runtime lock leaves it out.
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet uv
	.venv-lock/bin/uv pip compile pyproject.toml --extra dev --extra otel --generate-hashes \
		--python-version 3.11 --universal -o requirements.lock
	.venv-lock/bin/uv pip compile pyproject.toml --generate-hashes \
		--python-version 3.11 --universal -o requirements-runtime.lock
	.venv-lock/bin/uv pip compile requirements-build.in --generate-hashes \
		--python-version 3.11 --universal -o requirements-build.lock

clean:
	rm -rf $(VENV) .venv-lock .pytest_cache .mypy_cache .ruff_cache
