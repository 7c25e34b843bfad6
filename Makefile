# Two entry points: `make demo` (set up, then run the default demo) and `make test`.
# Everything is installed into a virtual environment by the project's own files.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; an unpinned torch pulls a multi-GB CUDA build. Override for a GPU box:
#   make demo TORCH='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126'
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/diffrep demo

test: $(VENV)/.installed
	@command -v chromium >/dev/null 2>&1 || sh tests/install_chromium.sh \
		|| echo "make test: Chromium could not be installed: the browser test will be skipped"
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/bench_train.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
