# The two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
DEMO_DIR ?= demo_output

.PHONY: demo test test-interop install clean

# Re-install only when setup.py changes (or the venv is new).
$(STAMP): setup.py
	@test -x $(PY) || (command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.10+"; exit 1; }; $(PYTHON) -m venv $(VENV))
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m examples.demo --output_dir $(DEMO_DIR)

# pytest exits 5 when it collects no tests: that is a failure here too.
test: $(STAMP)
	@rc=0; $(PY) -m pytest tests --durations=15 -p no:cacheprovider || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected; failing" >&2; fi; exit $$rc

# Checkpoint interop against PyTorch/transformers, in a venv of its own (.venv-interop, about
# 3.8 GB: tools/interop_env.sh): the committed fixtures must equal freshly generated ones, then
# tests_interop/ loads the converter's exports with transformers.
INTEROP_VENV := .venv-interop
INTEROP_PY := $(INTEROP_VENV)/bin/python
INTEROP_STAMP := $(INTEROP_VENV)/.install-stamp

$(INTEROP_STAMP): setup.py tools/interop_env.sh
	PYTHON=$(PYTHON) bash tools/interop_env.sh $(INTEROP_VENV)
	@touch $(INTEROP_STAMP)

test-interop: export TF_CPP_MIN_LOG_LEVEL = 2
test-interop: $(INTEROP_STAMP)
	$(INTEROP_PY) tests/data/make_interop_fixtures.py --check
	@rc=0; $(INTEROP_PY) -m pytest tests_interop -p no:cacheprovider || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-interop: no tests were collected; failing" >&2; fi; exit $$rc

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
