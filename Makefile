# The two set-up commands: `make demo` runs the example site, `make test` runs the whole suite on the embedded
# default (SQLite, in-process delivery). Both need only Python 3.11+; everything else is installed into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_HOST ?= 127.0.0.1:8000

.PHONY: demo test services-test lint typecheck docs bench django6 clean

# Django 6 needs Python 3.12+: the first of these that runs (pyenv's shims may exist without being active).
PYTHON_DJANGO6 ?= $(shell for p in python3.13 python3.12 $$HOME/.pyenv/versions/3.13*/bin/python3 \
	$$HOME/.pyenv/versions/3.12*/bin/python3; do "$$p" -c 'import sys; assert sys.version_info >= (3, 12)' \
	2>/dev/null && { command -v "$$p"; break; }; done)
VENV6 := .venv-django6

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "django-emailotp needs Python 3.11 or newer; run: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The demo needs the package and its REST API extra (pure Python): SQLite, in-process delivery, console email.
$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[api]"
	@touch $@

# Tests, linters and docs: every extra plus the dev dependency group (pip >= 25.1 reads dependency groups).
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[all]" --group dev
	@touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo_setup
	@echo ""
	@echo "  Open http://$(DEMO_HOST)/ and log in as demo / demo-password."
	@echo "  Codes are emailed to demo@example.com and printed in this terminal."
	@echo ""
	$(BIN)/python manage.py runserver $(DEMO_HOST)

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest

# The same suite on PostgreSQL, Redis and RabbitMQ, with real Celery and Django Tasks workers and an SMTP server
# (what CI runs second). The worker tests run on both brokers; each test run uses queues of its own.
services-test: $(VENV)/.dev-installed
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/emailotp} \
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/15} \
	RABBITMQ_URL=$${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672//} \
	$(BIN)/python -m pytest --cov --cov-report=term --cov-fail-under=95

# The real-browser test of the step-up flow: Debian's chromium at /usr/bin/chromium driven by Playwright against the
# example site (screenshots of each step in build/screenshots/). Without chromium it skips, unless CI=true.
.PHONY: browser
browser: $(VENV)/.dev-installed
	$(BIN)/python -m pytest tests/browser -m browser

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

docs: $(VENV)/.dev-installed
	$(BIN)/mkdocs build --strict --site-dir build/site

bench: $(VENV)/.dev-installed
	$(BIN)/python -m benchmarks

# Only the sign-in timing of `make bench`: known against unknown addresses on PostgreSQL and Redis (SECURITY.md rule 8).
.PHONY: bench-timing
bench-timing: $(VENV)/.dev-installed
	$(BIN)/python -m benchmarks sign-in-timing

# The embedded suite on the newest Django 6 and Python 3.13 (CI runs this beside the 5.2 LTS runs).
$(VENV6)/.installed: pyproject.toml
	@test -n "$(PYTHON_DJANGO6)" || { echo "Python 3.12+ is needed for Django 6: set PYTHON_DJANGO6=/path/to/python3.13"; exit 1; }
	$(PYTHON_DJANGO6) -m venv $(VENV6)
	$(VENV6)/bin/python -m pip install --quiet --upgrade pip
	$(VENV6)/bin/python -m pip install --quiet -e ".[all]" --group test "Django>=6.0,<6.2"
	@touch $@

django6: $(VENV6)/.installed
	$(VENV6)/bin/python -c 'import django, sys; print("Django", django.get_version(), "on Python", sys.version.split()[0])'
	$(VENV6)/bin/python -m pytest -p no:cacheprovider

clean:
	rm -rf $(VENV) $(VENV6) build .coverage .pytest_cache .mypy_cache .ruff_cache example.sqlite3

# The committed OpenAPI schema of the REST API (tests/test_api_schema.py checks it is current).
.PHONY: schema
schema: $(VENV)/.dev-installed
	$(BIN)/python manage.py shell -v 0 -c 'import json, pathlib; from django.test import Client; \
		schema = Client().get("/api/otp/schema/?format=json").json(); \
		pathlib.Path("docs/openapi.json").write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")'
	@echo "docs/openapi.json regenerated"
