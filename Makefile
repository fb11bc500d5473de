# Every target creates .venv itself through scripts/install.
.PHONY: run test check bench integration clean

run:
	@scripts/install
	@.venv/bin/courtyard up --demo

test:
	@scripts/install
	@scripts/test

check:
	@scripts/install
	@scripts/check

integration:
	@scripts/install
	@scripts/install-extras
	@scripts/test --integration

bench:
	@scripts/install
	@scripts/bench

clean:
	rm -rf .venv .courtyard .mypy_cache .ruff_cache build src/*.egg-info
