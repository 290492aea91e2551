# fpar: set-up, main job and tests. `make demo` and `make test` are the README's commands.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Caches stay inside the project so that compiled DeepSpeed ops survive between runs.
export FPAR_CACHE ?= $(CURDIR)/.cache
export TORCH_EXTENSIONS_DIR ?= $(FPAR_CACHE)/torch_extensions
export MPLBACKEND ?= Agg
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast gpu-check clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/fpar demo

test: setup
	@# The SLURM tests run a local two-node cluster (Debian packages; installs as root).
	@if [ "$$(id -u)" = 0 ]; then bash slurm/cluster.sh install; fi
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# One short run over the CUDA path (training in bf16 and fp16, checkpoint restore and resume
# compared bit for bit, evaluation, `fpar bench gpu`); one JSON line. Exit 2 without CUDA.
GPU_CHECK_ARGS ?=
gpu-check: setup
	$(BIN)/python -m launcher.gpu_check $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) $(FPAR_CACHE) .pytest_cache
