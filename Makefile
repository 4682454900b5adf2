# The README's commands. Each one installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run serve-nginx test bench drill soak lint format clean nginx wrk chromium

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $@

run: $(STAMP)
	$(BIN)/zdm-monitor serve

# The production shape on loopback: nginx on PORT (8000) -> gunicorn on PORT+1 -> PostgreSQL.
serve-nginx: $(STAMP) nginx
	$(BIN)/zdm-monitor serve --nginx

# Debian's nginx, for serve-nginx and the end-to-end tests.
nginx:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx)

# Debian's chromium, driven headless by the live page's browser test (tests/test_live_page.py),
# and a Korean font so the API's error messages are legible in its screenshots.
chromium:
	@test -x /usr/bin/chromium && test -d /usr/share/fonts/truetype/nanum || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-nanum)

# Debian's wrk drives the benchmark's load.
wrk:
	@command -v wrk >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)

# Not part of the tests: generates 1M jobs on first use (kept in var/bench), prints the table
# and writes bench/RESULTS.md.
bench: $(STAMP) wrk
	$(BIN)/python bench/run.py

# Fault drills (60 s of load; PostgreSQL stopped for 10 s, then a worker SIGKILLed). A shorter
# version runs in the tests (tests/test_drill.py).
drill: $(STAMP)
	$(BIN)/python tests/drill.py

# 100,000 requests of a mixed workload (hits, misses, filters, bad tokens, bad parameters):
# every answer as expected, no 5xx, worker memory flat after warm-up.
soak: $(STAMP)
	$(BIN)/python tests/drill.py --soak 100000

test: $(STAMP) nginx chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
