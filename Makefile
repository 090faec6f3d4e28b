# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv on first use. TORCH_SPEC picks the torch build: the default takes this machine's local
# CPU wheel; GPU users run e.g. `make demo TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"`
# or install torch into .venv themselves first (an installed torch is never replaced).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: setup demo test test-all clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q --disable-pip-version-check $(TORCH_SPEC)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/circuitclust demo $(DEMO_ARGS)

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
