# Two commands do everything on a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv quickstart test test-full lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev,ray]'
	touch $(STAMP)

venv: $(STAMP)

quickstart: $(STAMP)
	WANDB_MODE=disabled $(BIN)/python train.py experiment=quickstart

test: $(STAMP)
	$(BIN)/ruff check src tests scripts train.py
	WANDB_MODE=disabled $(BIN)/python -m pytest -q

test-full: $(STAMP)
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -m ''

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts train.py

bench: $(STAMP)
	$(BIN)/python -m jackpot.bench

clean:
	rm -rf outputs multirun .pytest_cache
