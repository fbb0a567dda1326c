# Two commands for a newcomer (Python 3.11, nothing installed):
#   make demo   -> set up .venv, run the whole workflow on the embedded demo (CPU, minutes)
#   make test   -> set up .venv, run the test suite
# Setting up is idempotent: a second run reinstalls nothing unless requirements changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false
export TRANSFORMERS_NO_TORCHVISION := 1

.PHONY: setup demo test test-fast lint format bench dryrun report clean-demo gpu-wheels gpu-bench-smoke

setup: $(STAMP)

# torch first, pinned, so pip takes the local CPU build instead of pulling CUDA wheels.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$$(grep -E '^torch==' requirements.txt)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --configfile config/demo.yaml --cores $(CORES) --rerun-incomplete --show-failed-logs
	@echo "Demo done: open results/demo/report/index.html"

report: $(STAMP)
	$(BIN)/snakemake --configfile config/demo.yaml --report results/demo/report.zip

# Two workers: the SLURM tests run on one (they share the test cluster) while the other
# builds the demo, once per session for both; the other tests fill in, a module with a
# module-scoped fixture on one worker. The collection order is the schedule
# (tests/conftest.py), so xdist must not reorder it by group size.
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=25 $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not slurm and not browser" $(PYTEST_ARGS)

# Every gate CI runs before the tests: ruff, ruff format, snakefmt, and Snakemake's own
# lint on the real, demo and demo+bench configs (each fails on a finding).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/snakemake --lint
	$(BIN)/snakemake --lint --configfile config/demo.yaml
	$(BIN)/snakemake --lint --configfile config/demo.yaml config/bench.yaml

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/snakefmt Snakefile rules/

dryrun: $(STAMP)
	$(BIN)/snakemake -n --quiet

# One table of every benchmark. Full matrix on a GPU machine; the CPU-sized --quick elsewhere.
BENCH_ARGS ?= $(if $(shell command -v nvidia-smi),,--quick)
bench: $(STAMP)
	$(BIN)/python tests/benchmarks/run_all.py $(BENCH_ARGS)

# The prepared GPU benchmark (tests/benchmarks/README.md, "gpu_bench.sh"): the wheels it
# carries to the GPU machine (downloaded here), and its CPU smoke on the tiny models.
gpu-wheels: $(STAMP)
	bash tests/benchmarks/gpu_wheels.sh

gpu-bench-smoke: $(STAMP)
	PYTHON=$(BIN)/python bash tests/benchmarks/gpu_bench.sh --cpu-smoke --out results/bench/gpu_smoke

clean-demo:
	rm -rf resources/demo results/demo logs/demo benchmarks/demo
