# demixbench: set-up and entry points. `make demo` and `make test` each do all set-up on a fresh
# Debian/Ubuntu machine (virtual environment, pinned packages, ffmpeg) and skip what is done.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
SNAKEMAKE := $(BIN)/snakemake
DVC := $(BIN)/dvc
# The experiment `make table` and `make evaluate` work on (a config replaces config.yaml whole).
CONFIG ?= config.yaml
DEMO_CONFIG := config/demo.yaml
# The results tree of a config: results/<experiment>/, from its `experiment` key (read when a
# recipe runs, after `venv` has installed PyYAML).
results_of = results/$(or $(shell $(BIN)/python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1])).get("experiment") or "")' $(1) 2>/dev/null),$(error $(1): no `experiment` key (see config.yaml)))
# The stamp records that the lock was installed; it is rebuilt when the lock or pyproject changes.
STAMP := $(VENV)/.installed

.PHONY: check-config demo test test-fast lint format dry-run table evaluate ffmpeg build-tools venv lock clean-results help slurm-up slurm-down

help:
	@echo "make demo        synthetic MUSDB18 -> trained U-Net, Demucs v1 and their GAN variants (2 seeds) -> results/demo/tables/sdr.md"
	@echo "make test        the test suite (includes the slow pipeline tests, as CI runs it)"
	@echo "make test-fast   the tests not marked slow"
	@echo "make lint        ruff (lint, format, imports), snakefmt and snakemake --lint (the test suite runs them too)"
	@echo "make format      apply ruff's fixes and formatting and snakefmt"
	@echo "make dry-run     list the jobs of the demo"
	@echo "make check-config  check that config.yaml, CONFIG and the demo config parse (file, line, column on an error)"
	@echo "make table       reviewer: pull the scores (DVC remote) and rebuild the tables; nothing is trained, separated or scored"
	@echo "make evaluate    lab: pull the checkpoints (DVC remote), separate and score the test set, rebuild the tables; never trains"
	@echo "                 (both on CONFIG=config.yaml by default, in results/<experiment>/ of that config)"
	@echo "make slurm-up    start a one-node Slurm test cluster (root, Debian 12; see docs/cluster.md)"
	@echo "make slurm-down  stop it"

demo: venv ffmpeg check-config
	$(SNAKEMAKE) --configfile $(DEMO_CONFIG) --cores $(CORES)
	@echo
	@cat $(call results_of,$(DEMO_CONFIG))/tables/sdr.md

test: venv ffmpeg
	$(BIN)/pytest

test-fast: venv ffmpeg
	$(BIN)/pytest -m "not slow"

# The same checks as tests/test_setup.py::test_code_is_lint_clean_and_formatted (so CI runs them).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(SNAKEMAKE) --lint --configfile $(DEMO_CONFIG)

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile workflow/rules

dry-run: venv check-config
	$(SNAKEMAKE) -n --configfile $(DEMO_CONFIG)

# Snakemake reports a config it cannot parse as "not valid JSON or YAML", naming neither file nor
# line; this names both before any workflow starts.
check-config: venv
	@$(BIN)/demixbench check-yaml config.yaml $(CONFIG) $(DEMO_CONFIG)

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml setup.py src/demixbench/score/_kernels.c | build-tools
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

# Reviewer flow: the tables from the scores alone. With a DVC remote configured, pull exactly
# what the tables need (the per-track scores and the dataset report with the split), then let
# Snakemake run only the table rules: pulled files are newer than the code and have no
# Snakemake metadata, so without --allowed-rules it would re-score, re-separate and retrain.
# Last, each table is checked against the md5 the lab published in dvc.lock.
table: venv check-config
	@results=$(call results_of,$(CONFIG)); \
	if [ -n "$$($(DVC) remote list 2>/dev/null)" ]; then \
		echo "$(DVC) pull $$results/scores $$results/datasets/report.json"; \
		$(DVC) pull $$results/scores $$results/datasets/report.json; \
	elif [ ! -d $$results/scores ]; then \
		echo "error: no $$results/scores and no DVC remote to pull them from: add the lab's remote (README: Reproduce the table as a reviewer) or run the pipeline" >&2; exit 1; \
	fi
	$(SNAKEMAKE) tables --configfile $(CONFIG) --cores $(CORES) --dry-run --allowed-rules make_table tables
	$(SNAKEMAKE) tables --configfile $(CONFIG) --cores $(CORES) --allowed-rules make_table tables
	@if [ -f dvc.lock ]; then \
		status=0; \
		for file in $(call results_of,$(CONFIG))/tables/*; do \
			published=$$(grep -A2 "path: $$file$$" dvc.lock | sed -n 's/^ *md5: //p'); \
			[ -n "$$published" ] || continue; \
			if [ "$$(md5sum < "$$file" | cut -d' ' -f1)" = "$$published" ]; then echo "$$file: identical to the published table (dvc.lock)"; \
			else echo "$$file: DIFFERS from the published table (dvc.lock)"; status=1; fi; \
		done; \
		exit $$status; \
	fi
	@echo
	@cat $(call results_of,$(CONFIG))/tables/sdr.md

# Lab flow: a clone with the lab's checkpoints separates and scores the test set again (after a
# change of the separation or scoring settings, or on another machine) without training: the
# pulled models, decoded arrays and input statistics are used as they are.
EVALUATE_RULES := separate_track separate_oracle score_run make_table tables plot_scores \
	plot_learning_curves make_listening_page record_provenance all
evaluate: venv ffmpeg check-config
	@results=$(call results_of,$(CONFIG)); \
	if [ -n "$$($(DVC) remote list 2>/dev/null)" ]; then \
		echo "$(DVC) pull $$results/models $$results/decoded $$results/stats/input_stats.npz $$results/datasets/report.json"; \
		$(DVC) pull $$results/models $$results/decoded $$results/stats/input_stats.npz $$results/datasets/report.json; \
	fi
	$(SNAKEMAKE) all --configfile $(CONFIG) --cores $(CORES) --dry-run --allowed-rules $(EVALUATE_RULES)
	$(SNAKEMAKE) all --configfile $(CONFIG) --cores $(CORES) --allowed-rules $(EVALUATE_RULES)
	@echo
	@cat $(call results_of,$(CONFIG))/tables/sdr.md

# `pip install -e .` compiles the fast scorer's loops (setup.py): a C compiler and Python's headers.
build-tools:
	@if command -v cc >/dev/null && $(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		version=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
		echo "installing a C compiler and Python $$version's headers (pip install -e . compiles the scorer's loops)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential python$$version-dev >/dev/null; \
	else \
		echo "error: pip install -e . compiles src/demixbench/score/_kernels.c and needs a C compiler (cc) and the headers of $(PYTHON) (Python.h); install them: sudo apt-get install build-essential python3-dev (Debian/Ubuntu), conda install -c conda-forge c-compiler, or xcode-select --install (macOS)" >&2; \
		exit 1; \
	fi

# musdb/stempeg (and so museval) refuse to import without ffmpeg and ffprobe on PATH.
ffmpeg:
	@if command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's ffmpeg (musdb needs ffmpeg and ffprobe)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; \
	else \
		echo "error: ffmpeg/ffprobe not found on PATH; install them: sudo apt-get install ffmpeg (Debian/Ubuntu), conda install -c conda-forge ffmpeg, or brew install ffmpeg (macOS)" >&2; \
		exit 1; \
	fi

# A one-node Slurm cluster for profiles/slurm-test (tests/test_slurm.py starts and stops its own).
SLURM_STATE ?= /tmp/demixbench-slurm
slurm-up:
	bash cluster/slurm-up.sh $(SLURM_STATE)

slurm-down:
	bash cluster/slurm-down.sh $(SLURM_STATE)

# Re-pin every package after changing pyproject.toml's dependencies.
lock: venv
	@{ echo "# Exact pins of every package in .venv (pip freeze on Python 3.11, Linux x86_64)."; \
	   echo "# Regenerate with: make lock. Installed by: make venv (then pip install -e .)"; \
	   $(BIN)/python -m pip freeze --exclude-editable | grep -v '^demixbench'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean-results:
	rm -rf results/* logs/* .snakemake
	touch results/.gitkeep logs/.gitkeep
