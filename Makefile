.DEFAULT_GOAL := help
.PHONY: help run test lint format migrations-check bench bench-inventory bench-customers bench-orders bench-campaigns setup demo clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-18s %s\n", $$1, $$2}'

run: ## Set everything up and start Omni with demo data (SQLite, file-system broker, worker + beat)
	@scripts/run.sh

test: ## Set everything up and run lint, the migrations check and the tests on a throwaway PostgreSQL
	@scripts/test.sh $(ARGS)

bench: ## Run the benchmarks (gunicorn + PostgreSQL + wrk) and write bench/results and docs/benchmarks.md
	@scripts/system_deps.sh wrk
	@scripts/setup.sh
	@.venv/bin/python scripts/with_postgres.py -- .venv/bin/python bench/run.py $(ARGS)

bench-inventory: ## Inventory benchmarks on 5 million stock rows; writes bench/results and docs/benchmarks-inventory.md
	@scripts/system_deps.sh wrk
	@scripts/setup.sh
	@.venv/bin/python scripts/with_postgres.py -- .venv/bin/python bench/inventory.py $(ARGS)

bench-customers: ## Customer benchmarks on 1 million customers and 5 million touchpoints; writes bench/results and docs/benchmarks-customers.md
	@scripts/system_deps.sh wrk
	@scripts/setup.sh
	@.venv/bin/python scripts/with_postgres.py -- .venv/bin/python bench/customers.py $(ARGS)

bench-orders: ## Order benchmarks: placement through the API against the floor and pgbench, the pickup queue page; writes docs/benchmarks-orders.md
	@scripts/system_deps.sh wrk
	@scripts/setup.sh
	@.venv/bin/python scripts/with_postgres.py -- .venv/bin/python bench/orders.py $(ARGS)

bench-campaigns: ## Campaign benchmarks: trigger detection against SQL, sending to the local outbox against a raw insert; writes docs/benchmarks-campaigns.md
	@scripts/setup.sh
	@.venv/bin/python scripts/with_postgres.py -- .venv/bin/python bench/campaigns.py $(ARGS)

setup: ## Create .venv and install dependencies
	@scripts/setup.sh

lint: setup ## ruff check, ruff format --check and the migrations check
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@DEBUG=true .venv/bin/python manage.py makemigrations --check --dry-run

format: setup ## Format the code with ruff
	@.venv/bin/ruff format .
	@.venv/bin/ruff check --fix .

clean: ## Delete var/ (the SQLite database, broker folders, feeds)
	rm -rf var
