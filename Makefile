# The two commands that matter: `make run` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# A local run is a development run unless the environment or .env says otherwise.
export DEBUG ?= true

.PHONY: run test lint typecheck pytest migrate admin frontend frontend-check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --noinput

run: migrate
	@echo ""
	@echo "  voicechat is starting at http://$(HOST):$(PORT)/"
	@echo "  Create an admin with:  make admin   (or .venv/bin/python manage.py createsuperuser)"
	@echo "  Sign up at http://$(HOST):$(PORT)/accounts/signup/ ; agents live at /admin/"
	@echo ""
	$(BIN)/daphne -b $(HOST) -p $(PORT) voicechat.asgi:application

admin: migrate
	$(BIN)/python manage.py createsuperuser

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy chat voicechat tests

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

frontend:
	cd frontend && npm ci --no-audit --no-fund && npm run build

frontend-check:
	@if [ -f frontend/package.json ]; then bash scripts/frontend-check.sh; fi

test: lint typecheck frontend-check pytest

bench: $(STAMP)
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
