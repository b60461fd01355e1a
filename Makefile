PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: test demo lint bench clean

SOURCES = pyproject.toml setup.py $(wildcard logcount/count/_scan*.c) logcount/count/_scan.h \
	$(wildcard logcount/count/_sum*.c) logcount/count/_sum.h logcount/count/_blake2b.h
DEMO_DIR ?= $(CURDIR)/.demo

# Rebuilt (the C scanner and sums with it) when a _scan*.c, _sum*.c or header changes: a stale build
# is not used. Two stamps: the test extras (make test, lint, bench), and logcount alone
# (make demo installs only what it runs); the first holds the second.
$(VENV)/.test-extras: $(SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.runtime

$(VENV)/.runtime: $(SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/logcount: $(VENV)/.test-extras
	touch $@

# The whole suite with the C scanner, end-to-end tests included (they skip, or fail
# under CI=true, when apache2/cronolog are missing: .ci/run installs them; under CI=true
# a scanner that was not built fails tests/test_scan.py). Then a minute of fuzzing the
# line path (tests/fuzz/fuzz_lines.py), then the modules that count lines again with the
# pure-Python scanner: the logcount processes they start read LOGCOUNT_PURE_PYTHON too,
# and both scanners must count the same. Modules that compare the two themselves
# (test_scan, test_hostile_lines, test_line_properties, test_rollup_bounds) and those
# about the sinks and reports are not repeated. Pytest's summary stays the last output.
FUZZ_TIME ?= 60
PURE_TESTS ?= tests/test_pipe.py tests/test_tail.py tests/test_rollup.py tests/test_lines.py \
	tests/test_member_bounds.py tests/test_classify.py tests/test_logformat.py \
	tests/test_cli_top.py tests/test_pipeline_limits.py tests/test_formats.py tests/e2e \
	tests/test_pipeline_reload.py tests/test_sections.py tests/test_visitors.py \
	tests/test_crawlers.py tests/test_device.py tests/test_times.py tests/test_events.py \
	tests/test_file_report.py tests/test_hosts_rollup.py tests/test_sites.py tests/test_real_keys.py
test: $(BIN)/logcount
	LOGCOUNT_PURE_PYTHON= $(BIN)/python -m pytest -q $(PYTEST_ARGS)
	$(BIN)/python tests/fuzz/fuzz_lines.py -max_total_time=$(FUZZ_TIME)
	@echo "== again with the pure-Python scanner (LOGCOUNT_PURE_PYTHON=1): $(PURE_TESTS)"
	LOGCOUNT_PURE_PYTHON=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS) $(PURE_TESTS)

lint: $(BIN)/logcount
	$(BIN)/ruff check logcount tests bench
	$(BIN)/ruff format --check logcount tests bench
	$(BIN)/mypy logcount

# Pipe a bundled sample log through the real `logcount pipe` into the embedded Redis of a
# fresh data directory (the last run's removed first, so a second run shows the same
# counts), show what it counted, then the same file's one-shot report.
DEMO_ENV = LOGCOUNT_DATA_DIR=$(DEMO_DIR) LOGCOUNT_CONFIG=contrib/demo.toml
demo: $(VENV)/.runtime
	@-$(DEMO_ENV) $(BIN)/logcount embedded stop >/dev/null 2>&1
	@rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	@cat contrib/demo.txt
	@$(DEMO_ENV) $(BIN)/logcount pipe < contrib/sample-access.log
	@echo '$$ logcount top --window 2015-05-17 --by path --limit 10'
	@$(DEMO_ENV) $(BIN)/logcount top --window 2015-05-17 --by path --limit 10
	@echo
	@echo '$$ logcount top --window 2015-05-17 --by status'
	@$(DEMO_ENV) $(BIN)/logcount top --window 2015-05-17 --by status
	@echo
	@echo '$$ logcount report contrib/sample-access.log --limit 3   (no Redis: counted in memory)'
	@$(DEMO_ENV) $(BIN)/logcount report contrib/sample-access.log --limit 3 --quiet

bench: $(BIN)/logcount
	$(BIN)/python bench/bench_pipe.py
	$(BIN)/python bench/bench_tail.py
	$(BIN)/python bench/bench_rollup.py
	$(BIN)/python bench/bench_report.py
	$(BIN)/python bench/bench_top.py
	$(BIN)/python bench/bench_serve.py

clean:
	-LOGCOUNT_DATA_DIR=$(DEMO_DIR) $(BIN)/logcount embedded stop 2>/dev/null
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache *.egg-info
