# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv on first use. TORCH_SPEC picks the torch build: the default takes this machine's local
# CPU wheel; GPU users run e.g. `make demo TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"`
# or install torch into .venv themselves first (an installed torch is never replaced).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
# Exact versions of every other package (pip constraints); `make lock` refreshes and tests it.
LOCK := requirements.lock
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: setup browser demo test lock clean-venv

$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q --disable-pip-version-check $(TORCH_SPEC)
	$(PY) -m pip install -q --disable-pip-version-check -c $(LOCK) -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/circuitclust demo $(DEMO_ARGS)

# The report's browser test needs Chromium; install Debian's where we can (root + apt-get), else it is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	    else echo "note: Chromium not installed; the browser test will be skipped"; fi; }

test: setup browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

# Resolve the newest versions pyproject.toml allows, run the whole suite on a fresh clone with them, and only
# then replace $(LOCK) (commit it afterwards).
lock:
	TORCH_SPEC="$(TORCH_SPEC)" bash scripts/refresh_lock.sh $(PYTHON)

clean-venv:
	rm -rf $(VENV)
