# The README's commands. Each one installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run demo-agent serve-nginx test bench drill soak lint format clean nginx wrk chromium dist node

$(STAMP): setup.cfg pyproject.toml dev/setup.cfg dev/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[test]' -e ./dev
	touch $@

run: $(STAMP)
	$(BIN)/zdm-dev serve

# Beside `make run`, in a second terminal: the demo's running jobs move until Ctrl-C.
demo-agent: $(STAMP)
	$(BIN)/zdm-dev demo-agent

# The production shape on loopback: nginx on PORT (8000) -> gunicorn on PORT+1 -> PostgreSQL.
serve-nginx: $(STAMP) nginx
	$(BIN)/zdm-dev serve --nginx

# Debian's nginx, for serve-nginx and the end-to-end tests.
nginx:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx)

# Debian's chromium, driven headless by the live page's browser test (tests/system/test_live_page.py),
# and a Korean font (fonts-nanum): with it the page's Korean names and messages are legible and the
# page says nothing of fonts; the test also runs a chromium without it, where the page says so.
chromium:
	@test -x /usr/bin/chromium && test -d /usr/share/fonts/truetype/nanum || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-nanum)

# Node.js and npm build the TypeScript client generated from the OpenAPI document
# (tests/system/test_clients.py; its packages come from tests/clients/typescript/package-lock.json).
node:
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm)

# Debian's wrk drives the benchmark's load.
wrk:
	@command -v wrk >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)

# Every layer on one machine, on loopback, with the demo data: nginx on PORT (8000) -> two
# gunicorn nodes (8001, 8002) -> PgBouncer (8003) -> a PostgreSQL streaming replica, the
# primary when the replica cannot serve. Data in var/cluster; Ctrl-C stops it all.
.PHONY: cluster
cluster: $(STAMP) nginx pgbouncer
	$(BIN)/zdm-dev cluster

# Not part of the tests: requests per second through nginx to one gunicorn node and to two in
# the same run, with the CPU per request of each layer; writes bench/CAPACITY.md.
.PHONY: capacity
capacity: $(STAMP) wrk nginx pgbouncer
	$(BIN)/python bench/capacity.py

# Debian's PgBouncer, for make cluster and the tests through it. The package's own service is
# not used: the tests and the cluster run PgBouncers of their own on free loopback ports.
.PHONY: pgbouncer
pgbouncer:
	@command -v pgbouncer >/dev/null 2>&1 || test -x /usr/sbin/pgbouncer || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer)

# Not part of the tests: generates 1M jobs on first use (kept in var/bench), measures the
# service against a hello-world Flask app (bench/ceiling.py) and the least an uncached job read
# needs (bench/lean.py) under the same gunicorn config, and what each trick of the request path
# buys (bench/tricks.py); prints the tables and writes bench/RESULTS.md. BENCH_CODE=<checkout>
# measures another version; BENCH_BEFORE=<checkout or git revision> measures one beside it,
# round by round; BENCH_CASES=A,B,C,ceiling,lean (BENCH_SECONDS, BENCH_ROUNDS) a short run.
bench: $(STAMP) wrk
	$(BIN)/python bench/run.py

# Fault drills (60 s of load; PostgreSQL stopped for 10 s, then a worker SIGKILLed). A shorter
# version runs in the tests (tests/system/test_drill.py).
drill: $(STAMP)
	$(BIN)/python tests/support/drill.py

# 100,000 requests of a mixed workload (hits, misses, filters, bad tokens, bad parameters):
# every answer as expected, no 5xx, worker memory flat after warm-up.
soak: $(STAMP)
	$(BIN)/python tests/support/drill.py --soak 100000

# nginx, chromium and PgBouncer for the end-to-end, browser and cluster tests; node for the
# generated TypeScript client.
test: $(STAMP) nginx chromium pgbouncer node
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The edit loop: every test that starts no server, browser or pip of its own (well under a
# minute).
# make test still runs everything, and is what CI runs.
.PHONY: test-fast
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The API test suite again, with every connection of the app going through PgBouncer in
# transaction pooling mode (tests/conftest.py: reader_url). Left out: tests/system, whose servers,
# browsers and wheels never use that connection (test_cluster.py has its own PgBouncer), and the
# replica tests, which start servers of their own.
.PHONY: e2e
e2e: $(STAMP) pgbouncer
	ZDM_TEST_PGBOUNCER=1 $(BIN)/python -m pytest \
	  --ignore=tests/system --ignore=tests/data/test_replicas.py $(PYTEST_ARGS)

# The sdist and the wheel an operator installs (docs/deploying.md, "Install from the wheel"):
# dist/zdm_monitor-<version>-py3-none-any.whl, with the gunicorn settings and the nginx site.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build dist *.egg-info dev/*.egg-info .pytest_cache .mypy_cache .ruff_cache
