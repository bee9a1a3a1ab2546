# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian packages the tests start for real (a test that needs mosquitto starts mosquitto).
APT_PACKAGES := mosquitto prometheus mbpoll socat openssl systemd chromium fonts-dejavu-core

.PHONY: demo test test-long lint typecheck bench system-deps clean

# The install ends with numba's cache built (about 20 s; NUMBA_CACHE_DIR if set, else the
# package's __pycache__), so the first `chargectl run`, `sim` or `demo` starts in a second.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools
	$(PY) -m pip install -q -e '.[test]'
	$(VENV)/bin/chargectl warm
	touch $(STAMP)

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing -- run: sudo apt-get install$$missing" >&2; exit 1; \
	  fi; \
	fi

demo: $(STAMP)
	$(VENV)/bin/chargectl demo

lint: $(STAMP)
	$(VENV)/bin/ruff check chargectl drivers sim tests benchmarks
	$(VENV)/bin/ruff format --check chargectl drivers sim tests benchmarks

# mypy checks the package as it installs (drivers/ and sim/ become chargectl.drivers and
# chargectl.sim), so it type-checks a throwaway install tree.
typecheck: $(STAMP)
	rm -rf .build/typecheck build
	$(PY) -m pip install -q --no-deps --no-build-isolation --target .build/typecheck . >/dev/null
	cd .build/typecheck && ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml -p chargectl

# The suite runs twice for the kernels: compiled, and with the JIT off so that coverage and
# plain Python see the same code.
# Two files at a time (pytest-xdist): most tests wait on real processes, not on the CPU; a
# module's tests stay on one worker, so its module fixtures run once.
PYTEST_PAR := -n 2 --dist loadfile
test: $(STAMP) system-deps lint typecheck
	$(VENV)/bin/pytest -q -m "not slow" $(PYTEST_PAR) --durations=15
	NUMBA_DISABLE_JIT=1 $(VENV)/bin/pytest -q -m "not slow" $(PYTEST_PAR) tests/alloc tests/sim_physics tests/sim_devices

test-long: $(STAMP) system-deps
	$(VENV)/bin/pytest -q -m slow $(PYTEST_PAR)

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b; done

clean:
	rm -rf $(VENV) .build .pytest_cache .mypy_cache .ruff_cache
