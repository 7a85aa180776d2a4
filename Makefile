# Two commands for a fresh machine:  `make demo` (main job) and `make test` (test suite).
# The virtualenv is created on first use and reused while pyproject.toml is unchanged.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
JOBS ?= 2

.PHONY: env demo test bench clean

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: a bare `torch` lets pip fetch a multi-GB CUDA build (docs/TOOLCHAIN.md)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/python -m edge_sdk.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile --durations=20

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_zoo.py

clean:
	rm -rf $(VENV) build *.egg-info demo-out
