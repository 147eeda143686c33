# The two commands of the README: `make run` and `make test`. Both create .venv on first use.
# `make run` builds the default study's tables through Snakemake (then records the DVC state).
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed

BIN    := $(CURDIR)/$(VENV)/bin

.PHONY: run test test-fast setup repro bench gpu-check

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# A run deleted on disk behind a finished job is pruned first (its job file and tables), so it is rebuilt.
run: $(STAMP)
	PATH="$(BIN):$$PATH" rdml pipeline prune
	PATH="$(BIN):$$PATH" snakemake all_tables --cores all

repro: $(STAMP)
	PATH="$(BIN):$$PATH" dvc repro

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

# The quick tier, for the edit-and-test loop: everything but the tests marked `system` (SLURM, Snakemake,
# DVC, killed and resumed processes) and `slow` (over ~3 s each on 2 cores; see pyproject.toml).
# `make test` still runs them all, and is what CI runs.
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not slow and not system"

# The README's Performance figures, measured side by side on this machine (a few minutes);
# each script writes its JSON into benchmarks/results/.
bench: $(STAMP)
	$(VENV)/bin/python benchmarks/cohort_throughput.py
	$(VENV)/bin/python benchmarks/pipeline_efficiency.py
	$(VENV)/bin/python benchmarks/gpu_packing.py
	$(VENV)/bin/python benchmarks/photo_transforms.py
	$(VENV)/bin/python benchmarks/vit_pair_memory.py
	$(VENV)/bin/python benchmarks/text_throughput.py
	$(VENV)/bin/python benchmarks/reid_data.py
	$(VENV)/bin/python benchmarks/imagenet_data.py
	$(VENV)/bin/python benchmarks/checkpoint_cost.py

# The prepared device check (benchmarks/README.md): at most 8 minutes on one GPU, everything rdml needs measured
# there, in benchmarks/results/gpu_check_<device>.json; on a CPU the same code at tiny sizes in under a minute.
# It runs with .venv's python where there is one, else with python3 and this checkout's src/ (a GPU machine's
# own image with torch, where nothing can be installed).
GPU_CHECK_PYTHON ?= $(if $(wildcard $(VENV)/bin/python),$(CURDIR)/$(VENV)/bin/python,python3)
gpu-check:
	PYTHONPATH="$(CURDIR)/src$${PYTHONPATH:+:$$PYTHONPATH}" $(GPU_CHECK_PYTHON) benchmarks/gpu_check.py
