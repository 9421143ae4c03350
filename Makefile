# Two entry points for a fresh machine:  `make demo`  and  `make test`.
# Both create/refresh the virtual environment in .venv first (idempotent: pip runs
# again only when pyproject.toml or constraints.txt changed).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: venv demo report demo-real slurm-profile test test-fast lint fmt clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[workflow,dev]'
	touch $(STAMP)

## demo: run the whole pipeline on the embedded synthetic cohort (config.yaml)
demo: venv
	$(BIN)/snakemake --cores $(CORES)
	@echo "Tables: results/tables/*.parquet   Report: run 'make report'"

report: venv
	$(BIN)/snakemake --cores $(CORES) --report results/report.html

## demo-real: run the pipeline on ../shared/data/real (public annotated MRI; not shipped)
demo-real: venv
	$(BIN)/snakemake --cores $(CORES) --configfile config/real.yaml

## slurm-profile: once per user and checkout, so that `snakemake --profile slurm` finds
## profiles/slurm (links it into ~/.config/snakemake; never overwrites another `slurm`)
slurm-profile: venv
	$(BIN)/spinecensus slurm-profile

## test: lint + the whole test suite (incl. the end-to-end workflow and SLURM tests)
test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not e2e and not slurm"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint --cores 1

fmt: venv
	$(BIN)/ruff format spinecensus tests benchmarks
	$(BIN)/snakefmt Snakefile workflow/rules

clean:
	rm -rf results .snakemake
