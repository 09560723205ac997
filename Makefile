# luna-streams: `make run` serves the whole stack, `make test` passes the tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test test-fast lint format reliability bench soak clean rabbitmq screenshots

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[dev,embedded,tracing]'
	touch $(STAMP)

install: $(STAMP)

# Start the local RabbitMQ when it is installed but down (CI machines have it installed).
rabbitmq:
	@if (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then :; \
	elif [ -n "$$LUNA_STREAMS_AMQP_URL" ]; then :; \
	elif command -v rabbitmq-server >/dev/null; then \
		echo "starting rabbitmq-server"; rabbitmq-server -detached; \
		for i in $$(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 1; done; \
		sleep 2; \
	else echo "RabbitMQ is not running and rabbitmq-server is not installed" >&2; fi

run: install rabbitmq
	$(VENV)/bin/luna-streams all

test: install rabbitmq
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The fast tier: tests/unit and tests/fast (the gateway's HTTP layer over an in-memory broker,
# tests/stub_broker.py), without RabbitMQ; under a minute. `make test` runs it too.
test-fast: install
	@TIMEFORMAT='make test-fast: %1R s wall time'; \
		time $(VENV)/bin/pytest tests/unit tests/fast $(PYTEST_ARGS)

# The fault and fuzz suites, longer than in `make test` (which runs them short).
reliability: install rabbitmq
	LUNA_STREAMS_FUZZ_EXAMPLES=$${LUNA_STREAMS_FUZZ_EXAMPLES:-100} \
		$(VENV)/bin/pytest tests/fault tests/reliability -s $(PYTEST_ARGS)

# Benchmarks print figures and ratios; they are not pass/fail.
bench: install rabbitmq
	$(PY) -m bench.bench_streams
	$(PY) -m bench.bench_processing

soak: install rabbitmq
	$(PY) -m bench.soak --minutes $${SOAK_MINUTES:-10}

# The console's PNGs in docs/ (README), from a gateway with sample streams, in Chromium.
screenshots: install rabbitmq
	$(PY) -m tests.browser.screenshots

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
