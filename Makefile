# `make run` and `make test` do all the set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test deps lint bench clean

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

lint: $(STAMP)
	$(VENV)/bin/ruff check src agent tests bench
	$(VENV)/bin/mypy src

bench: $(STAMP)
	sh scripts/system-deps.sh test
	$(PY) bench/ingest.py
	$(PY) bench/query.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
