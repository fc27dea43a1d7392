# The Airflow provider as a client (issue 19 part 3): its own virtualenv,
# .venv-airflow, with apache-airflow-providers-amazon and everything it pins
# (tools/requirements-airflow.txt). Included from the top Makefile.
#
#   make airflow-venv   create it (first time only; about a minute and 400 MB);
#                       tests/it/runtime/airflow.rs runs it itself when missing
#   make airflow-test   only the Airflow client tests (they also run in `make test`)

AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed

.PHONY: airflow-venv airflow-test

airflow-venv: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP): tools/requirements-airflow.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found: install Python 3.10 or newer (python3 and its venv module)." >&2; exit 1; }
	@[ -x $(AIRFLOW_VENV)/bin/python ] || $(PYTHON) -m venv $(AIRFLOW_VENV) || { echo "make: could not create $(AIRFLOW_VENV): install Python's venv module (Debian: apt-get install python3-venv)." >&2; exit 1; }
	@echo "- installing Apache Airflow and its Amazon provider into $(AIRFLOW_VENV)/ (first time only)"
	@$(AIRFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tools/requirements-airflow.txt || { echo "make: installing Airflow into $(AIRFLOW_VENV) failed (see pip's message above)." >&2; exit 1; }
	@touch $@

airflow-test: venv airflow-venv
	cargo test --test it -- runtime::airflow::
