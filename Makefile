# The two commands that matter: `make run` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: serving needs only the runtime requirements; testing adds the test and lint tools.
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
HOST ?= 127.0.0.1
PORT ?= 8000
# A local run is a development run unless the environment or .env says otherwise.
export DEBUG ?= true

.PHONY: run test lint typecheck pytest migrate admin frontend frontend-check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): $(BIN)/python requirements.txt
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(RUN_STAMP)

$(TEST_STAMP): $(RUN_STAMP) requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(TEST_STAMP)

migrate: $(RUN_STAMP)
	$(BIN)/python manage.py migrate --noinput

run: migrate
	@echo ""
	@echo "  voicechat is starting at http://$(HOST):$(PORT)/"
	@echo "  Create an admin with:  make admin   (or .venv/bin/python manage.py createsuperuser)"
	@echo "  Sign up at http://$(HOST):$(PORT)/accounts/signup/ ; agents live at /admin/"
	@echo "  Another port or address:  make run PORT=8080 HOST=0.0.0.0   (see HOST and PORT in README.md)"
	@echo ""
	$(BIN)/python -m voicechat.serve --host $(HOST) --port $(PORT)

admin: migrate
	$(BIN)/python manage.py createsuperuser

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(TEST_STAMP)
	$(BIN)/mypy chat voicechat tests

pytest: $(TEST_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

frontend:
	cd frontend && npm ci --no-audit --no-fund && npm run build

frontend-check:
	@if [ -f frontend/package.json ]; then bash scripts/frontend-check.sh; fi

test: lint typecheck frontend-check pytest

bench: $(TEST_STAMP)
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
