# `make demo` and `make test` do the whole set-up themselves on a fresh machine.
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-stamp
JS      = tests/clients/js
JS_STAMP = $(JS)/node_modules/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test lint format bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# The AWS SDK for JavaScript, an EC2 client of the end-to-end tests (pinned by package-lock.json).
$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	@command -v npm >/dev/null || { echo "make test needs Node.js and npm (Debian: apt install nodejs npm)"; exit 1; }
	npm ci --prefix $(JS) --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)

demo: $(STAMP)
	$(VENV)/bin/econe-server run --simulator

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint $(JS_STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/python bench/onesim_pool.py
	$(VENV)/bin/python bench/gateway.py

clean:
	rm -rf $(VENV) $(JS)/node_modules build *.egg-info .pytest_cache .ruff_cache
