# `make run` and `make test` do all the set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast deps lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv
	$(VENV)/bin/uv pip install -q --python $(PY) -e '.[test]'
	touch $@

deps: $(STAMP)

run: $(STAMP)
	sh scripts/system-deps.sh run
	$(VENV)/bin/vmjournal serve

test: lint
	sh scripts/system-deps.sh test
	$(VENV)/bin/pytest

# Everything but the QEMU end-to-end tests (minutes each), for quick loops; CI runs `make test`.
test-fast: $(STAMP)
	sh scripts/system-deps.sh test
	$(VENV)/bin/pytest -m "not e2e"

# The agent runs on the guest's python3 (Debian 12: 3.11, Ubuntu 22.04: 3.10): checked as 3.10.
lint: $(STAMP)
	$(VENV)/bin/ruff check src agent tests bench
	$(VENV)/bin/ruff format --check src agent tests bench
	$(VENV)/bin/mypy src tests bench
	$(VENV)/bin/mypy --python-version 3.10 agent

bench: $(STAMP)
	sh scripts/system-deps.sh test
	PYTHONPATH=tests $(PY) bench/ingest.py
	PYTHONPATH=tests $(PY) bench/query.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
