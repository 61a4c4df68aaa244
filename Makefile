# The two commands a fresh machine needs: `make run` and `make test`.
# Both create the virtualenv and install what they need first.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
VAR    ?= var
PORT   ?= 8000
export CRMKIT_VAR_DIR ?= $(abspath $(VAR))

.PHONY: run test lint typecheck bench load install install-dev clean-var help
.PHONY: run test lint typecheck audit bench bench-imports fuzz install install-dev clean-var help

help:
	@echo "make run    - install, initialise a SQLite demo database under $(VAR)/, print the admin login, serve on http://127.0.0.1:$(PORT)"
	@echo "make test   - install dev extras and run the test suite (CRMKIT_TEST_DATABASE_URL selects PostgreSQL)"
	@echo "make typecheck - mypy on the runtime (crmkit.runtime), through a symlink tree under build/typecheck"
	@echo "make audit  - check the installed dependencies against PyPI's vulnerability data (AUDIT_ARGS=--strict: unauditable versions fail too)"
	@echo "make bench  - run the benchmarks (BENCH_SIZE=100000, CRMKIT_DATABASE_URL selects the database)"
	@echo "make load   - load test: gunicorn (4 workers) on PostgreSQL + Redis, 50 locust users for 2 minutes (LOAD_ARGS)"
	@echo "make bench-imports - the import benchmark: engine vs raw load (BENCH_SIZE rows)"
	@echo "make fuzz   - a longer Schemathesis run against /api/v1 (FUZZ_EXAMPLES=200 per operation)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24" "setuptools>=80.10.2"  # the venv's bundled setuptools has known CVEs (make audit)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The local demo only: a secret key and an admin password are generated once and kept under var/.
# It is served over plain http on 127.0.0.1, so the session cookie must not be Secure-only
# (CRMKIT_SECURE_COOKIES=0); production keeps the default (Secure) behind https.
run: install
	@mkdir -p $(VAR)
	@test -s $(VAR)/secret_key || $(BIN)/python -c "import secrets;print(secrets.token_hex(32))" > $(VAR)/secret_key
	@CRMKIT_SECRET_KEY=$$(cat $(VAR)/secret_key) $(BIN)/crmkit init
	@CRMKIT_SECRET_KEY=$$(cat $(VAR)/secret_key) $(BIN)/crmkit apps list | grep -q "^membership .*installed" || \
		CRMKIT_SECRET_KEY=$$(cat $(VAR)/secret_key) $(BIN)/crmkit apps install membership --demo
	@test -s $(VAR)/admin_password || $(BIN)/python -c "import secrets;print(secrets.token_urlsafe(12))" > $(VAR)/admin_password
	@CRMKIT_SECRET_KEY=$$(cat $(VAR)/secret_key) $(BIN)/crmkit create-admin --if-missing --password "$$(cat $(VAR)/admin_password)" >/dev/null
	@echo ""
	@echo "  crmkit is starting on http://127.0.0.1:$(PORT)/"
	@echo "  log in as:  admin / $$(cat $(VAR)/admin_password)"
	@echo ""
	@CRMKIT_SECRET_KEY=$$(cat $(VAR)/secret_key) CRMKIT_SECURE_COOKIES=0 $(BIN)/crmkit run --with-worker --port $(PORT)

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .

# mypy sees import names, not folders: build/typecheck/crmkit mirrors the package-dir mapping in pyproject.toml
# (platform/ has no __init__.py on purpose, see docs/architecture.md). ln -sfn keeps it idempotent.
TYPECHECK_TREE = build/typecheck/crmkit
typecheck: install-dev
	@mkdir -p $(TYPECHECK_TREE)
	@ln -sfn ../../../platform/runtime $(TYPECHECK_TREE)/runtime
	@ln -sfn ../../../platform/builder $(TYPECHECK_TREE)/builder
	@ln -sfn ../../../apps $(TYPECHECK_TREE)/apps
	@ln -sfn ../../../migrations $(TYPECHECK_TREE)/migrations
	$(BIN)/mypy -p crmkit.runtime

# Known vulnerabilities of the venv's distributions, from PyPI's JSON API (docs/operations.md, "Dependency audit").
# The script uses only the standard library; it runs with the venv's python so that it sees the venv's packages.
audit: install-dev
	$(BIN)/python scripts/dependency_audit.py $(AUDIT_ARGS)

bench: install-dev
	$(BIN)/python -m bench $(BENCH_ARGS)

$(VENV)/.installed-load: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev,load]"
	@touch $@ $(VENV)/.installed $(VENV)/.installed-dev

load: $(VENV)/.installed-load
	$(BIN)/python -m bench.load $(LOAD_ARGS)
bench-imports: install-dev
	$(BIN)/python -m bench imports $(BENCH_ARGS)

FUZZ_EXAMPLES ?= 200
fuzz: install-dev
	CRMKIT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_api_fuzz.py

clean-var:
	rm -rf $(VAR)
