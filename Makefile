PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: test demo lint bench clean

$(BIN)/logcount: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# The whole suite, end-to-end tests included (they skip, or fail under CI=true,
# when apache2/cronolog are missing: .ci/run installs them).
# Then a minute of fuzzing the line path (tests/fuzz/fuzz_lines.py).
FUZZ_TIME ?= 60
test: $(BIN)/logcount
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
	$(BIN)/python tests/fuzz/fuzz_lines.py -max_total_time=$(FUZZ_TIME)

lint: $(BIN)/logcount
	$(BIN)/ruff check logcount tests bench
	$(BIN)/ruff format --check logcount tests bench
	$(BIN)/mypy logcount

# Pipe a bundled sample log through the real `logcount pipe` into the embedded
# Redis (a private data directory), then show what it counted.
demo: $(BIN)/logcount
	@mkdir -p .demo
	LOGCOUNT_DATA_DIR=$(CURDIR)/.demo LOGCOUNT_CONFIG=contrib/demo.toml \
		$(BIN)/logcount pipe < contrib/sample-access.log
	LOGCOUNT_DATA_DIR=$(CURDIR)/.demo LOGCOUNT_CONFIG=contrib/demo.toml \
		$(BIN)/logcount top --window 2015-05-17 --by path --limit 15
	LOGCOUNT_DATA_DIR=$(CURDIR)/.demo LOGCOUNT_CONFIG=contrib/demo.toml \
		$(BIN)/logcount top --window 2015-05-17 --by status

bench: $(BIN)/logcount
	$(BIN)/python bench/bench_pipe.py
	$(BIN)/python bench/bench_tail.py
	$(BIN)/python bench/bench_rollup.py
	$(BIN)/python bench/bench_top.py

clean:
	-LOGCOUNT_DATA_DIR=$(CURDIR)/.demo $(BIN)/logcount embedded stop 2>/dev/null
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache *.egg-info
