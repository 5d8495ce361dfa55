# The two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
DEMO_DIR ?= demo_output

.PHONY: demo test install clean

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

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
