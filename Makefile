# Live-shopping analytics: the two commands a newcomer needs are `make up` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

DBT_DIR := include/dbt
MANIFEST := $(DBT_DIR)/target/manifest.json
DBT_SOURCES := $(shell find $(DBT_DIR) -path $(DBT_DIR)/target -prune -o \( -name '*.sql' -o -name '*.yml' \) -print)

.PHONY: help
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

.PHONY: install
install: .venv/.lock-sha256 .venv-dbt/.lock-sha256  ## create/update .venv and .venv-dbt from the lock files

.venv/.lock-sha256 .venv-dbt/.lock-sha256: requirements.lock requirements-dbt.lock scripts/bootstrap.sh
	@scripts/bootstrap.sh

.PHONY: manifest
manifest: $(MANIFEST)  ## build the dbt manifest cosmos renders the DAG from

$(MANIFEST): .venv-dbt/.lock-sha256 $(DBT_SOURCES)
	@source scripts/env.sh && cd $(DBT_DIR) && LIVESHOP_DUCKDB_PATH=$${LIVESHOP_DUCKDB_PATH:-$$LIVESHOP_DATA_DIR/warehouse.duckdb} \
	  ../../.venv-dbt/bin/dbt parse --quiet --profiles-dir . --project-dir .

.PHONY: up
up: install manifest  ## start Airflow, the simulator and the dashboard (Ctrl-C stops all)
	@scripts/up.sh

.PHONY: up-emulator
up-emulator: install manifest  ## the same, with events on Google's Pub/Sub emulator (needs gcloud)
	@scripts/up.sh --pubsub-emulator

.PHONY: down
down:  ## stop a platform started with `make up` elsewhere
	@scripts/down.sh

.PHONY: test
test: install manifest  ## run the whole test suite
	@source scripts/env.sh && python -m pytest $(PYTEST_ARGS)

.PHONY: lock
lock:  ## re-resolve requirements*.txt into the lock files (needs uv)
	uv pip compile --quiet --python-version 3.11 requirements.txt -o requirements.lock
	uv pip compile --quiet --python-version 3.11 requirements-dbt.txt -o requirements-dbt.lock

.PHONY: schema
schema: install  ## write the event contract's JSON schema to docs/event.schema.json
	@source scripts/env.sh && python -c 'import json; from include.liveshop.contract import event_json_schema; print(json.dumps(event_json_schema(), indent=2))' > docs/event.schema.json

.PHONY: clean
clean:  ## remove local data (warehouse, bus, Airflow metadata); keeps the environments
	rm -rf .data $(DBT_DIR)/target $(DBT_DIR)/logs
