# Every target that runs code depends on install, so `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel first: a bare `torch` requirement would pull a multi-GB CUDA build.
# Override for a GPU box, e.g. make install TORCH_SPEC='torch==2.13.0' TORCH_PIP_ARGS='--index-url URL'
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest tests

demo: install
	PATH="$(abspath $(BIN)):$$PATH" bash recipes/demo.sh

lint: install
	$(BIN)/ruff check mosqa cli tests

bench: install
	PATH="$(abspath $(BIN)):$$PATH" bash recipes/bench/bench_simulate.sh
	PATH="$(abspath $(BIN)):$$PATH" bash recipes/bench/bench_dnsmos.sh
	PATH="$(abspath $(BIN)):$$PATH" bash recipes/bench/bench_qa.sh
	PATH="$(abspath $(BIN)):$$PATH" bash recipes/bench/bench_se.sh

clean:
	rm -rf $(VENV) demo exp bench_out
