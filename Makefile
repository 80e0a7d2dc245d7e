# Developer and operator entry points. `make test` and `make demo` install what they
# need first, so either works as the very first command on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install test test-fast lint fmt demo airflow capacity plan apply tf-check pool bench-map bench-preprocess bench-idle bench-stitch clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v ffmpeg >/dev/null 2>&1 || { echo "installing ffmpeg (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	@touch $(STAMP)

test: install
	$(BIN)/pytest -q

test-fast: install
	$(BIN)/pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Preprocessing benchmarks (60-minute 720p screenshare, cached in $BENCH_CACHE or
# /tmp/analysis-bench-cache; results appended to bench/RESULTS.md under "Preprocessing").
bench-preprocess: install
	$(BIN)/python bench/bench_preprocess.py --append

bench-idle: install
	$(BIN)/python bench/bench_idle.py --append

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
