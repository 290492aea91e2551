# fpar: set-up, main job and tests. `make demo` and `make test` are the README's commands.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Caches stay inside the project so that compiled DeepSpeed ops survive between runs.
export FPAR_CACHE ?= $(CURDIR)/.cache
export TORCH_EXTENSIONS_DIR ?= $(FPAR_CACHE)/torch_extensions
export MPLBACKEND ?= Agg
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast gpu-check wheelhouse gpu-check-node clean

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

# For an offline GPU node with its own Python and PyTorch: the wheels fpar needs beyond
# them (for WHEEL_PYTHON on manylinux x86_64, DeepSpeed built here as pure Python) and small
# prebuilt shards, checked to install with pip --no-index; under 40 MiB, git-ignored.
WHEELHOUSE ?= wheelhouse
WHEEL_PYTHON ?= 3.12
WHEEL_ARGS ?=
wheelhouse: setup
	$(BIN)/python -m launcher.wheelhouse --out $(WHEELHOUSE) --python-version $(WHEEL_PYTHON) $(WHEEL_ARGS)

# On the node, in this checkout with its wheelhouse: install into $(WHEELHOUSE)/site with
# the node's own python3 (no index, no network), then run the check on the prebuilt shards.
NODE_PYTHON ?= python3
gpu-check-node:
	$(NODE_PYTHON) -m pip install --quiet --no-index --no-deps --find-links $(WHEELHOUSE) \
		--target $(WHEELHOUSE)/site --upgrade -r $(WHEELHOUSE)/requirements.txt
	PYTHONPATH=$(abspath $(WHEELHOUSE))/site MPLBACKEND=Agg $(NODE_PYTHON) -m launcher.gpu_check \
		--shards $(WHEELHOUSE)/shards $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) $(FPAR_CACHE) .pytest_cache
