# GridLink — the two commands a newcomer needs are `make run` and `make test`.
PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)
export PYTHONWARNINGS := ignore::DeprecationWarning

.PHONY: run start stop install install-browser infra test test-unit test-integration test-e2e lint format reconcile parked bench bench-ab clean

run: install ## install what is missing, start everything with demo data, Ctrl-C stops
	$(PY) deploy/local/stack.py up

start: install ## the same, in the background (`make stop` stops it)
	$(PY) deploy/local/stack.py start

stop: ## stop what `make run`/`make start` started
	@[ -x $(PY) ] && $(PY) deploy/local/stack.py stop || true

install: ## virtualenv, RabbitMQ and FerretDB, each only if missing
	@bash deploy/local/bootstrap.sh

install-browser: ## the same, and Chromium and axe-core for the portal's browser tests
	@bash deploy/local/bootstrap.sh --browser

infra: install ## RabbitMQ and FerretDB only
	$(PY) deploy/local/stack.py infra

# The tests start their own FerretDB and services (see tests/conftest.py); they need the
# installs and a running RabbitMQ, which they also start if it is down.
test: install-browser lint ## the whole suite against the real broker and database
	$(PY) -m pytest tests/unit tests/integration tests/e2e

test-unit: install
	$(PY) -m pytest tests/unit

test-integration: install
	$(PY) -m pytest tests/integration

test-e2e: install-browser
	$(PY) -m pytest tests/e2e

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: install
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

reconcile: ## prove the points bank adds up (REPAIR=1 heals what a crash left behind)
	$(PY) -m services.points.reconcile $(if $(REPAIR),--repair)

parked: ## events the consumers could not apply (REPLAY=1 sends them back to their handlers)
	$(PY) -m shared.parked $(if $(REPLAY),--replay)

bench: install ## throughput and latency figures: the volunteer-act flow, the registry, points, sign-in
	$(PY) tests/bench/bench_flow.py
	$(PY) tests/bench/bench_registry.py
	$(PY) tests/bench/bench_points.py
	$(PY) tests/bench/bench_sign_in.py

bench-ab: install ## one benchmark on BASE and on the working tree in turns (BASE=<revision> [BENCH= RUNS=])
	@[ -n "$(BASE)" ] || { echo "usage: make bench-ab BASE=<git revision> [BENCH=bench_flow.py] [RUNS=2]"; exit 2; }
	$(PY) tests/bench/bench_ab.py $(BASE) --bench $(or $(BENCH),bench_flow.py) --runs $(or $(RUNS),2)

clean: stop
	rm -rf .data
