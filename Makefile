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

unit: install
	$(BIN)/pytest -q -m "not slow"

# Unit and end-to-end suites run apart so each prints its own time (unit target: < 3 min on 2 cores).
# One pytest process each: test_pipeline's param-change cases share one copy of the repro, so
# pytest-xdist's two workers failed them (tried: 3 of 30 slow tests failed).
# FACEGEN_E2E_REPO: tests/test_pipeline.py checks the default repro that just ran instead of running
# a tiny one of its own (one pipeline in CI, not two).
test: install
	$(BIN)/pytest -q -m "not slow" --durations=5
	$(BIN)/dvc repro
	FACEGEN_E2E_REPO=$(CURDIR) $(BIN)/pytest -q -m slow --durations=5
	$(BIN)/python -m facegen.ci.metric_gate

bench: install
	$(BIN)/python -m benchmarks
