# The two commands a newcomer needs: `make up` runs the platform, `make test` runs the tests.
# Both install what they need first (a uv binary in .tools/, every distribution in .venv/).

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never

.PHONY: up test install lint typecheck proto proto-check unit bench harness-up harness-down clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# `uv sync --frozen` installs exactly what uv.lock says; a stale lock fails instead of drifting.
$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard */pyproject.toml */*/pyproject.toml)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

install: $(VENV)/.synced

up: install
	$(BIN)/trunkline up $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python scripts/build_openapi.py --check

typecheck: install
	$(BIN)/mypy libs/domain/src libs/store/src libs/telemetry/src libs/events/src libs/digest/src \
		services/api/src services/signaling/src services/media/src services/auth/src \
		services/cnam/src cli/src \
		e2e/harness/src

proto: install
	$(BIN)/python scripts/gen_proto.py

proto-check: install
	$(BIN)/python scripts/gen_proto.py --check

# Fast tests only: no real processes (`trunkline up`) started.
unit: install
	$(BIN)/pytest -m "not e2e"

test: lint typecheck proto-check
	$(BIN)/pytest

# The tests' real infrastructure, started by hand (tests reuse it, and leave it running).
harness-up: install
	$(BIN)/trunkline-harness up $(ARGS)

harness-down: install
	$(BIN)/trunkline-harness down $(ARGS)

bench: install
	$(BIN)/python benchmarks/api_requests.py

clean:
	rm -rf .tools $(VENV) .pytest_cache .mypy_cache .ruff_cache
