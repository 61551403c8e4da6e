# medaug: `make run` builds the environment and runs the whole pipeline on the demo data;
# `make test` builds the same environment and runs the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medaug-installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: run test test-fast lint bench clean-outputs

run: $(STAMP)
	dvc repro

# two pytest-xdist workers (TEST_WORKERS=0: one process); the shared run's modules stay together (tests/conftest.py)
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

# the inner loop: every test but the whole-pipeline runs (marked slow); `make test` (and CI) runs everything
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# ruff, mypy on pipeline/ ([tool.mypy] in pyproject.toml) and the GitHub workflow's checks (as tests/test_workflow.py
# runs them); .pre-commit-config.yaml runs the same on a commit
lint: $(STAMP)
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/ruff format --check pipeline tests bench
	$(BIN)/actionlint .github/workflows/*.yml
	$(BIN)/zizmor --offline --quiet .github/workflows
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/bench_pipeline.py

# requirements.lock pins every package (torch 2.13.0 resolves to the CPU wheel on a machine without CUDA
# when the CPU build is offered, e.g. from PyTorch's CPU index or a local wheel folder).
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

clean-outputs:
	rm -rf data/demo data/processed data/synthetic models reports/figures reports/*.md
