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

# Unit and end-to-end suites run apart so each prints its own time (unit target: < 3 min on 2 cores),
# each on two pytest workers (-n 2): on a 2-core Zen 4 the unit suite takes 120 s instead of 156, the
# slow one 246 s instead of 287, which keeps CI on an AVX2-only CPU near its 40-minute budget.
# FACEGEN_E2E_REPO: tests/test_pipeline.py checks the default repro that just ran instead of running
# a tiny one of its own (one pipeline in CI, not two).
test: install
	$(BIN)/pytest -q -n 2 -m "not slow" --durations=5
	$(BIN)/dvc repro
	FACEGEN_E2E_REPO=$(CURDIR) $(BIN)/pytest -q -n 2 -m slow --durations=5
	$(BIN)/python -m facegen.ci.metric_gate

bench: install
	$(BIN)/python -m benchmarks
