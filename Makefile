# ResNet-18 / CIFAR-10 performance lab. Every target sets up what it needs and skips what is there.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PROFILE ?= auto

.DEFAULT_GOAL := help
.PHONY: help setup test train clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(STAMP) ## create $(VENV) and install the lab with its notebook and test extras

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[notebooks,test]'
	@touch $(STAMP)

test: setup ## run the test suite
	$(PY) -m pytest

train: setup ## a short training run on synthetic data (2 epochs x 3 batches)
	$(PY) -m lab train --dataset synthetic --epoch 2 --max-batches 3 --workers 0

clean: ## remove generated outputs (results, figures, checkpoints, synthetic data); keeps $(VENV)
	rm -rf results figures checkpoints data/synthetic
