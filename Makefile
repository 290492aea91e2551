# fpar: set-up, main job and tests. `make demo` and `make test` are the README's commands.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Caches stay inside the project so that compiled DeepSpeed ops survive between runs.
export FPAR_CACHE ?= $(CURDIR)/.cache
export TORCH_EXTENSIONS_DIR ?= $(FPAR_CACHE)/torch_extensions
export MPLBACKEND ?= Agg
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast clean

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

clean:
	rm -rf $(VENV) $(FPAR_CACHE) .pytest_cache
