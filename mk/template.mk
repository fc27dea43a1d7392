# The SAM template's checks. Included from the top Makefile; also usable on its
# own: `make -f mk/template.mk template-check`.
#
#   make sam-venv        the SAM tools in .venv-sam/ (pinned: tools/requirements-sam.txt,
#                        plus checkov's side environment below), and the local
#                        tools' package (tools/localdev, editable, --no-deps) for
#                        the template assertions and the bootstrap check
#   make template-check  sam validate --lint, cfn-lint, checkov, the template
#                        assertions (IAM least privilege, stream mapping, ...),
#                        the execute-api signing checks, and the arm64 `sam build`
#
# Everything after the install runs offline: no AWS account, credentials or
# network (fake credentials and a fixed region are set for the SAM CLI).

SHELL := /bin/bash
PYTHON ?= python3

SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed
SAM_BIN := $(SAM_VENV)/bin
# checkov pins boto3==1.35.49 and aws-sam-cli pins boto3==1.43.108: pip cannot
# put them in one environment, so checkov gets its own, inside .venv-sam/.
CHECKOV_VENV := $(SAM_VENV)/checkov
CHECKOV_PIN := checkov==3.3.30

SAM_TEMPLATE := template.yaml
SAM_ARM64_TARGET := aarch64-unknown-linux-gnu
# `sam build` output and the cross build's cargo target directory stay under
# target/ (ignored), and apart from the debug builds of `make test`.
SAM_BUILD_DIR := target/sam/build
SAM_CARGO_TARGET_DIR := target/sam/cargo
SAM_BUILD_STATUS := target/sam/arm64-build.status

# Offline, deterministic SAM CLI: no telemetry, a fixed region, fake credentials
# (nothing here talks to AWS), no instance-metadata lookups.
# Used as `env $(SAM_OFFLINE_ENV) command`.
SAM_OFFLINE_ENV := -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN \
	SAM_CLI_TELEMETRY=0 SAM_CLI_DISABLE_VERSION_CHECK=1 \
	AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
	AWS_ACCESS_KEY_ID=AKIDEXAMPLEOFFLINE AWS_SECRET_ACCESS_KEY=offline-fake-secret \
	AWS_EC2_METADATA_DISABLED=true

SAM_PIP_FLAGS := --quiet --disable-pip-version-check
# The local tools' package (the top Makefile sets the same).
LOCALDEV ?= tools/localdev
LOCALDEV_PROJECT ?= $(LOCALDEV)/pyproject.toml

.PHONY: sam-venv template-check template-lint template-cfn-lint template-checkov \
	template-assertions sign-check template-build clean-sam-venv

sam-venv: $(SAM_STAMP)

$(SAM_STAMP): tools/requirements-sam.txt mk/template.mk $(LOCALDEV_PROJECT)
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "sam-venv: $(PYTHON) not found: install Python 3.9 or newer (python3 and its venv module)." >&2; exit 1; }
	@[ -x $(SAM_BIN)/python ] || $(PYTHON) -m venv $(SAM_VENV) || { echo "sam-venv: could not create $(SAM_VENV): install Python's venv module (Debian: apt-get install python3-venv)." >&2; exit 1; }
	$(SAM_BIN)/python -m pip install $(SAM_PIP_FLAGS) -r tools/requirements-sam.txt || { echo "sam-venv: installing tools/requirements-sam.txt into $(SAM_VENV) failed (see pip's message above)." >&2; exit 1; }
	$(SAM_BIN)/python -m pip install $(SAM_PIP_FLAGS) --no-deps -e $(LOCALDEV) || { echo "sam-venv: installing the local tools ($(LOCALDEV)) into $(SAM_VENV) failed (see pip's message above)." >&2; exit 1; }
	@[ -x $(CHECKOV_VENV)/bin/python ] || $(PYTHON) -m venv $(CHECKOV_VENV) || { echo "sam-venv: could not create $(CHECKOV_VENV)." >&2; exit 1; }
	$(CHECKOV_VENV)/bin/python -m pip install $(SAM_PIP_FLAGS) $(CHECKOV_PIN) || { echo "sam-venv: installing $(CHECKOV_PIN) into $(CHECKOV_VENV) failed (see pip's message above)." >&2; exit 1; }
	@touch $@

# Each step says what failed; they run in this order (the cheap ones first).
template-check: template-lint template-cfn-lint template-checkov template-assertions sign-check template-build
	@if [ -f $(SAM_BUILD_STATUS) ] && [ "$$(cat $(SAM_BUILD_STATUS))" = skipped ]; then \
		echo "template-check: all checks passed, except the arm64 build, which was SKIPPED (see above)"; \
	else \
		echo "template-check: all checks passed"; \
	fi

template-lint: $(SAM_STAMP)
	@echo "== sam validate --lint"
	@env $(SAM_OFFLINE_ENV) $(SAM_BIN)/sam validate --lint --template-file $(SAM_TEMPLATE) --region us-east-1 \
		|| { echo "template-check: FAILED: sam validate --lint reported problems in $(SAM_TEMPLATE) (above)." >&2; exit 1; }

# cfn-lint exits 0 only with neither errors nor warnings (informational
# findings are not shown by default and do not count).
template-cfn-lint: $(SAM_STAMP)
	@echo "== cfn-lint $(SAM_TEMPLATE)"
	@env $(SAM_OFFLINE_ENV) $(SAM_BIN)/cfn-lint --regions us-east-1 -- $(SAM_TEMPLATE) \
		&& echo "cfn-lint: no errors, no warnings" \
		|| { echo "template-check: FAILED: cfn-lint found errors or warnings in $(SAM_TEMPLATE) (above)." >&2; exit 1; }

# Checks that do not apply are skipped in the template (Metadata: checkov: skip,
# each with its reason), never here.
template-checkov: $(SAM_STAMP)
	@echo "== checkov -f $(SAM_TEMPLATE) --framework cloudformation --skip-download"
	@env $(SAM_OFFLINE_ENV) BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov -f $(SAM_TEMPLATE) \
		--framework cloudformation --skip-download --compact --quiet \
		|| { echo "template-check: FAILED: checkov reported failed checks on $(SAM_TEMPLATE) (above)." >&2; exit 1; }

template-assertions: $(SAM_STAMP)
	@echo "== pytest $(LOCALDEV)/tests/test_template.py ($(SAM_TEMPLATE))"
	@env SAM_TEMPLATE=$(SAM_TEMPLATE) $(SAM_BIN)/python -m pytest -q -p no:cacheprovider $(LOCALDEV)/tests/test_template.py \
		|| { echo "template-check: FAILED: the template assertions (IAM least privilege, stream mapping, ...) failed (above)." >&2; exit 1; }

# The deployed API checks SigV4 for service `execute-api`; the mwaa-serverless
# clients sign for `airflow-serverless`. Both ways of re-signing are tested
# against a local endpoint that verifies the signature.
sign-check:
	@echo "== cargo test --test it -- runtime::sign_execute_api:: (boto3 and aws-sdk-mwaaserverless against the kit's SigV4 verifier)"
	@cargo test --quiet --test it -- runtime::sign_execute_api:: \
		|| { echo "template-check: FAILED: the execute-api signing tests failed (above)." >&2; exit 1; }

# The arm64 build needs the Rust standard library for aarch64-unknown-linux-gnu
# (`rustup target add aarch64-unknown-linux-gnu`, tried here when missing).
# Where it cannot be installed the step says so in one line and is skipped;
# every other step stays strict.
template-build: $(SAM_STAMP)
	@echo "== sam build --beta-features (arm64, cargo-lambda + zig)"
	@if command -v rustup >/dev/null 2>&1; then \
		installed=$$(rustup target list --installed 2>/dev/null | grep -cx '$(SAM_ARM64_TARGET)'); \
	else \
		installed=$$([ -d "$$(rustc --print target-libdir --target $(SAM_ARM64_TARGET) 2>/dev/null)" ] && echo 1 || echo 0); \
	fi; \
	mkdir -p $(dir $(SAM_BUILD_STATUS)); rm -f $(SAM_BUILD_STATUS); \
	if [ "$$installed" != 1 ] && command -v rustup >/dev/null 2>&1; then \
		echo "   installing the Rust target $(SAM_ARM64_TARGET) (rustup, at most 5 minutes)"; \
		timeout 300 rustup target add $(SAM_ARM64_TARGET) >/dev/null 2>&1 || true; \
		installed=$$(rustup target list --installed 2>/dev/null | grep -cx '$(SAM_ARM64_TARGET)'); \
	fi; \
	if [ "$$installed" != 1 ]; then \
		echo skipped > $(SAM_BUILD_STATUS); \
		echo "template-build: SKIPPED the arm64 sam build: the Rust target $(SAM_ARM64_TARGET) is not installed (rustup target add $(SAM_ARM64_TARGET) needs the Rust dist server; no package registry ships a std for rustc $$(rustc --version | cut -d' ' -f2))"; \
		exit 0; \
	fi; \
	rm -rf $(SAM_BUILD_DIR); \
	echo "   cargo lambda build --release --arm64 --bins (the three functions in one build; sam build then finds them built)"; \
	start=$$(date +%s); \
	env $(SAM_OFFLINE_ENV) PATH="$(abspath $(SAM_BIN)):$$PATH" CARGO_TARGET_DIR="$(abspath $(SAM_CARGO_TARGET_DIR))" \
		$(SAM_BIN)/cargo-lambda lambda build --release --arm64 --bins \
		|| { echo "template-check: FAILED: cargo lambda build --release --arm64 --bins failed (above)." >&2; exit 1; }; \
	echo "   built in $$(( $$(date +%s) - start )) s; sam build:"; \
	env $(SAM_OFFLINE_ENV) PATH="$(abspath $(SAM_BIN)):$$PATH" CARGO_TARGET_DIR="$(abspath $(SAM_CARGO_TARGET_DIR))" \
		$(SAM_BIN)/sam build --beta-features --template-file $(SAM_TEMPLATE) --build-dir $(SAM_BUILD_DIR) \
		|| { echo "template-check: FAILED: sam build --beta-features (arm64) failed (above)." >&2; exit 1; }; \
	$(SAM_BIN)/python -m localdev.check_bootstrap \
		$(SAM_BUILD_DIR)/RunApiFunction/bootstrap $(SAM_BUILD_DIR)/StopFinalizerFunction/bootstrap \
		$(SAM_BUILD_DIR)/StopReconcilerFunction/bootstrap \
		|| { echo "template-check: FAILED: the built bootstrap files are not aarch64 ELF executables (above)." >&2; exit 1; }; \
	echo built > $(SAM_BUILD_STATUS)

clean-sam-venv:
	rm -rf $(SAM_VENV)
