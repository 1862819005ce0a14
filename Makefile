# Two commands do everything on a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv quickstart test test-full clusters test-torch lint bench gpu-wheels clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev,ray]'
	touch $(STAMP)

venv: $(STAMP)

quickstart: $(STAMP)
	WANDB_MODE=disabled $(BIN)/python train.py experiment=quickstart

test: $(STAMP)
	$(BIN)/ruff check src tests scripts examples train.py
	WANDB_MODE=disabled $(BIN)/python -m pytest -q

# test-full adds the slow checks, among them the Ray and SLURM launchers against real clusters on loopback
# (tests/test_launchers_real.py): run `make clusters` once first (Debian/Ubuntu, root), else those skip.
test-full: $(STAMP)
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -m ''

# SLURM, munge, MariaDB (apt-get, scripts/real_clusters.sh) and the venv's slurm extra, for `make test-full`
clusters: $(STAMP)
	bash scripts/real_clusters.sh
	$(BIN)/pip install -q -e '.[dev,ray,slurm]'

# The suite under another torch, .venv untouched; default: the GPU image's (scripts/test_torch_version.sh)
TORCH ?= 2.11.0
TORCHVISION ?= 0.26.0
test-torch: $(STAMP)
	bash scripts/test_torch_version.sh $(TORCH) $(TORCHVISION)

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts examples train.py

bench: $(STAMP)
	$(BIN)/python -m jackpot.bench

# Wheels of what a bare GPU image lacks (Hydra, omegaconf, antlr4 at this venv's versions), for scripts/gpu_check.sh
gpu-wheels: $(STAMP)
	$(BIN)/pip freeze | grep -iE '^(hydra-core|omegaconf|antlr4-python3-runtime)==' > .whl.txt
	$(BIN)/pip wheel -q --no-deps -w .whl -r .whl.txt
	rm .whl.txt

clean:
	rm -rf outputs multirun .pytest_cache
