# Common tasks. Every target is a plain command you can also type yourself.
PY ?= python

.PHONY: help install test test-fast lint format quickstart
help:  ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

install:  ## install mdrn with the extras CI installs: all (app, medical, export, notebooks, slurm, pacs) and dev; spandrel apart (README)
	$(PY) -m pip install -e ".[all,dev]"

test:  ## run the test suite
	$(PY) -m pytest -q

test-fast:  ## the tests that neither train nor drive the browser
	$(PY) -m pytest -q -m "not slow and not browser"

lint:  ## ruff lint and format check
	ruff check . && ruff format --check .

format:  ## ruff autofix and format
	ruff check --fix . && ruff format .

quickstart:  ## train + evaluate a small MDRN on the embedded sample data (minutes on a CPU)
	$(PY) -m mdrn.train experiment=quickstart

# Paper artefacts (Table 1, Table 2, Figs. 8, 10-16, claims): targets live beside the experiments.
-include experiments/experiments.mk

.PHONY: bench
bench:  ## benchmark: hot paths against naive baselines and the machine limits (~3 min on 2 idle cores)
	$(PY) -m mdrn.bench

.PHONY: gpu-checks gpu-data
PART ?= all
gpu-checks:  ## on a CUDA machine: PART=bench (gpu tests + mdrn-bench, <4 min) or learn (<8 min); OUT=folder
	bash scripts/gpu_checks.sh $(PART)

gpu-data:  ## .gpu_data/ for gpu-checks PART=learn: the T91 images >= 192 px, 75 BSD200 images, Set5 from ../shared (~26 MiB)
	$(PY) scripts/gpu_data.py
