# The two commands of the README:
#   make demo   set up .venv/ if needed, then run the demo on built-in synthetic data
#   make test   set up .venv/ if needed, then run the whole test suite
# Set-up is incremental (scripts/setup_env.sh): a second run starts within seconds.

VENV     := .venv
PY       := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test msgs clean help

help:
	@echo "make demo   - set up (if needed) and run the demo (writes demo_out/)"
	@echo "make test   - set up (if needed) and run the whole test suite"
	@echo "make setup  - only create/refresh .venv/ (deps, messages, package)"
	@echo "make clean  - remove build outputs (keeps .venv/)"

setup:
	@scripts/setup_env.sh

msgs: setup

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest test $(PYTEST_ARGS)

clean:
	rm -rf build install log demo_out .pytest_cache
