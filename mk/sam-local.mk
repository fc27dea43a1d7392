# `sam local`: the Lambda base image and the tests of `make sam-local` and
# `sam local invoke`. Included from the top Makefile (after mk/template.mk).
#
#   make sam-image       the image public.ecr.aws/lambda/provided:al2023-arm64 in the
#                        Docker engine: already there, pulled, or the Debian stand-in
#                        (tools/localdev/src/localdev/standin_image.py, standard library
#                        only, run by path with $(PYTHON); cached under target/sam-local/)
#   make sam-local-test  the end-to-end tests (tests/it/runtime/sam_local.rs); without
#                        a Docker engine, arm64 emulation or the arm64 build they are
#                        SKIPPED with one line, and in CI (CI=true) that is a failure
#
# The engine itself: tools/samlocal/engine.sh install|start|stop (as root, on a
# Debian machine without one; .ci/run does it).

SAM_LOCAL_DIR := target/sam-local

.PHONY: sam-image sam-local-test

# One build at a time (.ci/run starts one early, in the background): the
# second waits, then finds the image loaded.
sam-image:
	@mkdir -p $(SAM_LOCAL_DIR)
	@flock $(SAM_LOCAL_DIR)/image.lock $(PYTHON) tools/localdev/src/localdev/standin_image.py $(if $(filter true,$(CI)),--no-pull)

sam-local-test: venv
	@missing=""; \
	if ! command -v docker >/dev/null 2>&1; then missing="docker client (install Docker)"; \
	elif ! docker info >/dev/null 2>&1; then missing="Docker engine (docker info fails; as root on Debian: tools/samlocal/engine.sh install start)"; \
	elif [ "$$(cat $(SAM_BUILD_STATUS) 2>/dev/null)" != built ]; then missing="arm64 sam build (make template-build)"; \
	elif [ "$$(uname -s)" = Linux ] && [ "$$(uname -m)" != aarch64 ] && ! grep -qs aarch64 /proc/sys/fs/binfmt_misc/*; then \
		missing="arm64 emulation (qemu-user-static registered in binfmt_misc: tools/samlocal/engine.sh start)"; \
	fi; \
	if [ -n "$$missing" ]; then \
		if [ "$(CI)" = true ]; then echo "sam-local-test: FAILED: CI runs the sam local tests, but there is no $$missing." >&2; exit 1; fi; \
		echo "sam-local-test: SKIPPED the sam local tests (make sam-local, sam local invoke of events/): no $$missing"; \
		exit 0; \
	fi; \
	$(MAKE) --no-print-directory sam-venv sam-image && \
	echo "== cargo test --test it -- --ignored runtime::sam_local:: (make sam-local and sam local invoke, in Docker)" && \
	cargo test --test it -- --ignored --test-threads 1 runtime::sam_local::
