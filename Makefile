# Everything a user or CI runs. `make test` is the one test command (CI runs it
# through .ci/run); it installs what it needs into .venv on first use.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: test venv lint unit integration clean-venv

test: venv lint
	cargo test --all-targets --no-fail-fast

venv: $(STAMP)

$(STAMP): tools/requirements-test.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found: install Python 3.9 or newer (python3 and its venv module)." >&2; exit 1; }
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV) || { echo "make: could not create $(VENV): install Python's venv module (Debian: apt-get install python3-venv)." >&2; exit 1; }
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tools/requirements-test.txt || { echo "make: installing the test tools into $(VENV) failed (see pip's message above)." >&2; exit 1; }
	@touch $@

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

# Subsets, for a quicker loop while developing.
unit:
	cargo test --lib --test service_fakes --test adapters_mock --test finalizer_fakes

integration: venv
	cargo test --test api_moto --test finalizer_moto --test lambda_runtime

clean-venv:
	rm -rf $(VENV)
