# The reliability suite (docs/reliability.md). Included from the top Makefile.
#
# `make test` already runs its deterministic part: `cargo test --all-targets`
# runs the `reliability::` tier of tests/it (faults, crashes, races, tenancy, a
# 2,000-case seeded fuzz run per target and the tests/corpus/ replay).
#
#   make reliability        the deterministic part alone
#   make reliability-long   the long runs: the request-path and stream-decoder
#                           fuzz targets at RELIABILITY_FUZZ_CASES cases each
#                           (default 100,000), then SOAK_ROUNDS repetitions of
#                           the fault/crash/race tests; every step is bounded
#                           by `timeout` and stops by itself.

RELIABILITY_FUZZ_CASES ?= 100000
RELIABILITY_FUZZ_TIMEOUT ?= 1800
SOAK_ROUNDS ?= 3
SOAK_TIMEOUT ?= 900

.PHONY: reliability reliability-long

reliability: venv
	cargo test --test it -- reliability::

reliability-long: venv
	cargo test --test it --no-run
	RELIABILITY_FUZZ_CASES=$(RELIABILITY_FUZZ_CASES) timeout --kill-after=30 $(RELIABILITY_FUZZ_TIMEOUT) \
		cargo test --test it -- reliability::fuzz:: --ignored --nocapture --test-threads 2
	@for i in $$(seq 1 $(SOAK_ROUNDS)); do \
		echo "- soak round $$i of $(SOAK_ROUNDS)"; \
		timeout --kill-after=30 $(SOAK_TIMEOUT) cargo test --test it -- reliability::faults:: reliability::crash:: \
			reliability::races:: || exit 1; \
	done
