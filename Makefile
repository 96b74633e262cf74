# ResNet-18 / CIFAR-10 performance lab. Every target sets up what it needs and skips what is there.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PROFILE ?= auto

.DEFAULT_GOAL := help
.PHONY: help setup browser report test lab bench train cpp clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(STAMP) ## create the virtual environment (.venv, or VENV=...) and install the lab with its notebook and test extras

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -e '.[notebooks,test]'
	@touch $(STAMP)

browser: ## Debian chromium + poppler-utils for report.pdf and the browser tests (apt-get, where root)
	@scripts/install-browser.sh

report: setup browser ## run every notebook under PROFILE (auto|quick|full|file.yaml) -> results/latest/report.html, .pdf
	$(PY) -m lab report --profile $(PROFILE)

test: setup browser ## the test suite, a worker per core: unit tests, the report end to end (tiny, killed and resumed), Q_model under nbval
	$(PY) -m pytest -n auto --dist loadfile --durations=15 tests

lab: setup ## JupyterLab on this folder (JUPYTER_ARGS="--no-browser --port 8899" to pass options)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root) $(JUPYTER_ARGS)

bench: setup ## speed goals P1, P2, P3 (and P5 on CUDA) as ratios with their spread (results/bench-<time>.json)
	$(PY) -m lab bench

train: setup ## a short training run on synthetic data (2 epochs x 3 batches)
	$(PY) -m lab train --dataset synthetic --epoch 2 --max-batches 3 --workers 0

cpp: setup ## build the C++ loader of the deployed model (cpp/deploy_bench.cpp, docs/cpp.md) and print its path
	$(PY) -m lab.engine.cpp

clean: ## remove generated outputs (results, figures, checkpoints, synthetic data); keeps the virtual environment
	rm -rf results figures checkpoints data/synthetic
