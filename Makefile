# Everything a user or CI runs. `make test` is the one test command (CI runs it
# through .ci/run); it installs what it needs into .venv on first use.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# The local tools, one Python package (`python -m localdev ...`), installed
# editable into $(VENV) (and into .venv-sam by mk/template.mk): a change to its
# modules needs no reinstall, a change to its pyproject.toml reinstalls.
LOCALDEV := tools/localdev
LOCALDEV_PROJECT := $(LOCALDEV)/pyproject.toml

LOCAL_AWS_PORT ?= 5000
LOCAL_API_PORT ?= 9000
# `make sam-local` only: where `sam local start-lambda` serves the Invoke API.
LOCAL_LAMBDA_PORT ?= 9001
# `make seed` into a running `make sam-local`: SAM_LOCAL=1 (its API URL differs).
SAM_LOCAL ?=
# The local stack's safety net (tools/localdev/src/localdev/settings.py checks them):
# LOCAL_STREAM_MAPPING=off starts no stream mapping, as if disabled in AWS;
# the reconciler runs every LOCAL_RECONCILE_PERIOD seconds and finalizes runs
# STOPPING longer than LOCAL_RECONCILE_AFTER_MS.
LOCAL_STREAM_MAPPING ?=
LOCAL_RECONCILE_PERIOD ?= 10
LOCAL_RECONCILE_AFTER_MS ?= 5000
# AUTHZ_POLICY_FILE=FILE: run-api authorizes with that Cedar policy set
# (docs/authorization.md) instead of the shipped default policy.
AUTHZ_POLICY_FILE ?=
LOCAL_ENV = LOCAL_STREAM_MAPPING='$(LOCAL_STREAM_MAPPING)' LOCAL_RECONCILE_PERIOD='$(LOCAL_RECONCILE_PERIOD)' \
	LOCAL_RECONCILE_AFTER_MS='$(LOCAL_RECONCILE_AFTER_MS)' AUTHZ_POLICY_FILE='$(AUTHZ_POLICY_FILE)'
WORKERS ?= 3
CHILDREN ?= 0
CHILD_POLICY ?= TERMINATE

.PHONY: test venv lint unit integration pytest local demo seed events bench clean-venv sam-local check-policy

test: venv lint pytest
	cargo test --all-targets --no-fail-fast
	cargo run --quiet --example bench -- --smoke --out target/bench-smoke
	$(MAKE) --no-print-directory template-check
	$(MAKE) --no-print-directory sam-local-test

# The benchmark (numbers, never a pass/fail): release binaries (x86-64 here,
# arm64 through the SAM build), then every measurement in one run; results in
# bench/results/latest.{md,json}, and docs/performance.md's tables regenerated
# from them (localdev.perfdoc; `make test` fails while the doc is out of date).
bench: venv template-build
	cargo build --release --bins --example bench
	cargo build --profile release-speed --bins
	cargo run --release --quiet --example bench
	$(VENV)/bin/python -m localdev.perfdoc

# Validate a Cedar policy set against the shipped schema before deploying it
# (docs/authorization.md): make check-policy FILE=policies/examples/no-prod-stops.cedar
check-policy:
	@[ -n "$(FILE)" ] || { echo "check-policy: name the policy set: make check-policy FILE=path/to/policies.cedar" >&2; exit 2; }
	@cargo run --quiet --example check-policy -- $(FILE)

# The Python tools' own tests (tools/localdev/tests/): the local stream mapping
# (filtering, batching, partial failures), the local stack, the demo tour's
# printing, the template assertions (also run by `make template-check`), and
# the docs' drift checks (README vs template.yaml, docs/performance.md vs
# bench/results/).
pytest: venv
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider $(LOCALDEV)/tests

# The whole service on this machine, in the foreground (Ctrl-C stops it).
local: venv
	@$(LOCAL_ENV) $(VENV)/bin/python -m localdev up --aws-port $(LOCAL_AWS_PORT) --api-port $(LOCAL_API_PORT)

# The guided tour: start, stop a run with the AWS CLI, watch it reach STOPPED, shut down.
demo: venv
	@$(LOCAL_ENV) $(VENV)/bin/python -m localdev demo --aws-port $(LOCAL_AWS_PORT) --api-port $(LOCAL_API_PORT)

# Print the run events of a running `make local` as they arrive (moto's
# EventBridge default bus, through the queue a rule on it feeds; Ctrl-C stops).
events:
	@[ -x $(VENV)/bin/python ] || { echo "make: run 'make local' first." >&2; exit 1; }
	@$(VENV)/bin/python -m localdev events --aws-port $(LOCAL_AWS_PORT)

# Seed another run into a running `make local`. The values are checked
# (whole numbers, limits, the policy) before anything is touched.
seed:
	@[ -x $(VENV)/bin/python ] || { echo "make: run 'make local' first." >&2; exit 1; }
	@$(VENV)/bin/python -m localdev seed --aws-port $(LOCAL_AWS_PORT) --api-port $(LOCAL_API_PORT) \
		--workers='$(WORKERS)' --children='$(CHILDREN)' --child-policy='$(CHILD_POLICY)' $(if $(SAM_LOCAL),--sam)

# The same stack as `make local`, with the functions in SAM's Lambda containers
# (arm64, Docker): run-api behind `sam local start-api` on LOCAL_API_PORT, the
# finalizer and the reconciler behind `sam local start-lambda` on
# LOCAL_LAMBDA_PORT. Builds what it needs first: the arm64 `sam build`
# (template-build) and the Lambda base image (sam-image). docs/deploy.md.
sam-local: venv template-build sam-image
	@$(LOCAL_ENV) $(VENV)/bin/python -m localdev sam-up --aws-port $(LOCAL_AWS_PORT) --api-port $(LOCAL_API_PORT) \
		--lambda-port $(LOCAL_LAMBDA_PORT)

venv: $(STAMP)

$(STAMP): tools/requirements-test.txt tools/requirements-watch.txt $(LOCALDEV_PROJECT)
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found: install Python 3.9 or newer (python3 and its venv module)." >&2; exit 1; }
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV) || { echo "make: could not create $(VENV): install Python's venv module (Debian: apt-get install python3-venv)." >&2; exit 1; }
	@echo "- installing moto, cargo-lambda, the AWS CLI and the local tools into $(VENV)/ (first time only)"
	@$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tools/requirements-test.txt || { echo "make: installing the test tools into $(VENV) failed (see pip's message above)." >&2; exit 1; }
	@$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r tools/requirements-watch.txt || { echo "make: installing cargo-lambda into $(VENV) failed (see pip's message above)." >&2; exit 1; }
	@$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e $(LOCALDEV) || { echo "make: installing the local tools ($(LOCALDEV)) into $(VENV) failed (see pip's message above)." >&2; exit 1; }
	@touch $@

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	tools/check-architecture.sh

# Subsets, for a quicker loop while developing (tiers of tests/it, ARCHITECTURE.md).
unit:
	cargo test --lib
	cargo test --test it -- fakes:: adapters::

integration: venv
	cargo test --test it -- moto:: runtime::lambda::

clean-venv:
	rm -rf $(VENV) .venv-airflow

# The SAM template's checks (template-check, sam-venv, ...).
include mk/template.mk
# `sam local`: the Docker engine, the base image, the tests (sam-image, sam-local-test).
include mk/sam-local.mk
# The reliability suite's targets (reliability, reliability-long).
include mk/reliability.mk
# The Airflow provider's virtualenv and tests (airflow-venv, airflow-test).
include mk/airflow.mk
