# Two commands for a fresh machine:  `make demo` (main job) and `make test` (test suite).
# The virtualenv is created on first use and reused while pyproject.toml is unchanged.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
JOBS ?= 2

.PHONY: env demo test bench fuzz clean web-deps

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: a bare `torch` lets pip fetch a multi-GB CUDA build (docs/TOOLCHAIN.md)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[convert,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/edge-sdk quickstart

test: $(STAMP) web-deps
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile --durations=20

bench: $(STAMP)  # conversions first, then the timings with nothing else converting (hours on 2 cores)
	$(BIN)/python benchmarks/bench_zoo.py --convert-only
	$(BIN)/python benchmarks/bench_zoo.py --cached-only
	$(BIN)/python benchmarks/bench_int8.py
	$(BIN)/python benchmarks/profile_zoo.py

# >= 5,000 hostile files per runtime + images + checkpoints + atheris -> benchmarks/results/fuzz.md (~15 min, niced)
fuzz: $(STAMP)
	$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/pip install -q 'atheris>=3' || echo "atheris did not install: its runs are skipped"
	nice -n 10 $(BIN)/python tests/fuzz/run_fuzz.py --mutants 5000

clean:
	rm -rf $(VENV) build *.egg-info demo-out

# The browser tests' tools (tests/test_web.py, tests/test_serve.py): Debian's chromium (apt, ~440 MB; never a
# downloaded browser) and apps/web's npm packages (LiteRT.js served by `edge-sdk serve`, playwright-core to drive
# Chromium). Quick when both are present.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
WEB_STAMP := apps/web/node_modules/.installed

web-deps: $(WEB_STAMP)
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

$(WEB_STAMP): apps/web/package-lock.json
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm; }
	cd apps/web && npm ci --no-audit --no-fund --loglevel=error
	touch $@
