# Two commands on a fresh machine: `make demo` (the main job) and `make test` (what CI runs).
VENV ?= .venv
BIN := $(VENV)/bin
# The PostgreSQL 15 server the suite also runs against (production's version).
PG15_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export GX_ANALYTICS_ENABLED := false
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: install demo test lint gx test-unit test-embedded test-pg15 clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(BIN)/cj-health demo

# Regenerate the GX context in great_expectations/ through GX's API from the rules dbt
# compiles; GX checks each table asset exists, so the models are built in a throwaway
# database on the embedded server. Commit the result. `make gx GX_VARS='{stuck_after_minutes:
# 10}'` bakes other thresholds in. A test fails while the checked-in context differs.
gx: install
	env -u CJ_DATABASE_URL $(BIN)/python -m cj_health.gx.generate $(if $(GX_VARS),--vars '$(GX_VARS)')

lint: install
	$(BIN)/ruff check cj_health python_fix tests
	# sqlfluff's dbt templater opens a connection (it lists relations): use the embedded server,
	# started (and its dev schema brought up to date) by `db init`; `db env` never starts it.
	env -u CJ_DATABASE_URL $(BIN)/cj-health db init >/dev/null
	exports="$$(env -u CJ_DATABASE_URL $(BIN)/cj-health db env)" && eval "$$exports" && \
	  $(BIN)/sqlfluff lint models macros tests/dbt

# The whole suite: first the database-free unit tests (seconds; a unit test that opens a
# connection fails), then the rest once against the embedded server and once against
# PostgreSQL 15, side by side (one core each); each run's output is printed whole when it ends.
test: lint test-unit
	$(MAKE) --no-print-directory -j2 --output-sync=target test-embedded test-pg15

test-unit: install
	env -u CJ_TEST_ADMIN_URL -u CJ_DATABASE_URL $(BIN)/pytest -m unit

test-embedded: install
	env -u CJ_TEST_ADMIN_URL -u CJ_DATABASE_URL $(BIN)/pytest -m "not unit"

test-pg15: install
	env -u CJ_DATABASE_URL CJ_TEST_ADMIN_URL=$(PG15_URL) $(BIN)/pytest -m "not unit"

clean:
	-$(BIN)/cj-health db stop
	rm -rf target logs .cj-health great_expectations/uncommitted
