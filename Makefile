# Set-up and entry points. `make demo` runs the main job, `make test` the test suite;
# both create the virtual environment in .venv on first use (CPU PyTorch).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup browser demo test test-fast lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test,app]"
	touch $@

demo: setup
	$(BIN)/ravar demo

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# Debian's chromium for the browser test of `ravar serve`; installed only when missing, and a
# failure (not root, no apt) is ignored: that test then skips with the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) \
		|| echo "chromium could not be installed: the browser test of ravar serve will skip"

test: setup lint browser
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist src/*.egg-info
