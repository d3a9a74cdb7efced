# Set-up and the two everyday jobs. `make demo` and `make test` work on a fresh clone.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo_out

.PHONY: setup demo test test-fast lint mutation clean

setup: $(VENV)/.installed

# torch is pinned here, not in pyproject: 2.13.0 is a local CPU wheel on CPU machines and the CUDA build on GPU ones.
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: setup
	$(BIN)/talmts demo --out $(OUT)

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

# the suite without the end-to-end runs (marked slow): about a minute, for the edit-test loop
test-fast: lint
	$(BIN)/pytest -q -m "not slow"

# Mutation testing of the modules that decide the numbers (docs/TESTING.md): hours of CPU, never part of `make test`.
# Every mutant without a result yet; MUTANTS='talmts.evaluation.*' (re)runs one group.
MUTANTS ?=
mutation: setup
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 $(BIN)/mutmut run --max-children 2 $(if $(MUTANTS),'$(MUTANTS)')
	$(BIN)/python tests/mutation_score.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache mutants
