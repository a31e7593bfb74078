# Two entry points for a fresh machine (Python 3.11 present, nothing else):
#   make run   - create .venv, install, run the whole pipeline (`dvc repro`) on the embedded data
#   make test  - create .venv, install, run the unit tests, the default `dvc repro`, the slow end-to-end
#                tests (the pipeline ones on that repro's outputs) and the metric gate (bands from
#                metrics_noise.json)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test unit bench
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-cache-dir -e '.[test]'
	touch $@

run: install
	$(BIN)/dvc repro

# Two pytest-xdist workers, a test file per worker (--dist loadfile: a module-scoped fixture is built
# once). On a 2-core AMD Zen 3 (AVX2 only), where `make test` took 42.2 min, they cut the unit suite
# from 195 s to 148-153 s and the end-to-end one from 341 s to 274 s (test_pipeline alone 14 s).
XDIST := -n 2 --dist loadfile
unit: install
	$(BIN)/pytest -q -m "not slow" $(XDIST)

# Unit and end-to-end suites run apart so each prints its own time (unit target: < 3 min on 2 cores).
# FACEGEN_E2E_REPO: tests/test_pipeline.py checks the default repro that just ran instead of running
# a tiny one of its own (one pipeline in CI, not two). It runs alone, first: its parameter cases edit
# that checkout's params.yaml for a moment, and other end-to-end tests copy the checkout.
test: install
	$(BIN)/pytest -q -m "not slow" $(XDIST) --durations=5
	$(BIN)/dvc repro
	FACEGEN_E2E_REPO=$(CURDIR) $(BIN)/pytest -q -m slow tests/test_pipeline.py
	$(BIN)/pytest -q -m slow $(XDIST) --ignore=tests/test_pipeline.py --durations=5
	$(BIN)/python -m facegen.ci.metric_gate

bench: install
	$(BIN)/python -m benchmarks
