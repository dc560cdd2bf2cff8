# Two entry points for a fresh machine: `make study` (environment + smoke study) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ptmdd-installed

.PHONY: env study test lint

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job. Until the study notebooks land it trains the smoke PTM pool (offline, Digits).
study: env
	$(BIN)/ptmdd pretrain --source Digits --arch ConvNet --num 2 --epochs 3

lint: env
	$(BIN)/ruff check ptmdd_helpers tests

test: env lint
	$(BIN)/python -m pytest
