#!/usr/bin/env bash
# The folder rule of ARCHITECTURE.md, checked (`make lint` runs it):
#   - only src/aws/ names the AWS SDK (aws_sdk_*, aws_config, aws_smithy_*);
#   - only src/lambda/ and the entry points in src/bin/ name the Lambda
#     crates (lambda_http, lambda_runtime, aws_lambda_events);
#   - nothing in the crate depends on config (the composition root);
#   - each module uses only the modules below it (no back edge, so no
#     import circle): domain < ports < error < protocol, ports < pacing,
#     domain < authz < stop, ports < stop < finalize, and the edges (aws, lambda) on top.
# Comment lines are not code and are not checked.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
fail() { echo "check-architecture: $*" >&2; status=1; }

# Code lines of a file, as "file:line:text", comments left out.
code() { grep -Hn '' "$@" | grep -Ev '^[^:]+:[0-9]+:[[:space:]]*//'; }

while IFS= read -r hit; do
  fail "the AWS SDK is named outside src/aws/: $hit"
done < <(code $(find src -name '*.rs' -not -path 'src/aws/*') | grep -E '\b(aws_sdk_[a-z0-9_]+|aws_config|aws_smithy_[a-z_]+)::' || true)

while IFS= read -r hit; do
  fail "a Lambda crate is named outside src/lambda/ and src/bin/: $hit"
done < <(code $(find src -name '*.rs' -not -path 'src/lambda/*' -not -path 'src/bin/*') \
  | grep -E '\b(lambda_http|lambda_runtime|aws_lambda_events)::' || true)

while IFS= read -r hit; do
  fail "a grouped crate import hides what it uses (write crate::module::... paths): $hit"
done < <(code $(find src -name '*.rs') | grep -E '\bcrate::\{' || true)

# module (top-level name under src/) -> the crate modules it may use
declare -A allowed=(
  [domain]=""
  [metrics]=""
  [authz]="domain"
  [ports]="domain"
  [pacing]="ports"
  [error]="domain ports"
  [protocol]="domain ports error"
  [stop]="domain authz ports error metrics"
  [finalize]="domain ports stop metrics"
  [aws]="domain ports metrics"
  [run_events]="domain ports"
  [lambda]="domain authz ports error protocol stop finalize metrics run_events"
  [config]="authz aws finalize lambda pacing stop"
  [lib]="authz aws config error finalize lambda metrics domain pacing ports protocol run_events stop"
)
for file in $(find src -name '*.rs' -not -path 'src/bin/*' | sort); do
  rel=${file#src/}
  module=${rel%%/*}
  module=${module%.rs}
  if [[ -z ${allowed[$module]+set} ]]; then
    fail "$file: module '$module' has no place in the layering (add it here and to ARCHITECTURE.md)"
    continue
  fi
  for used in $(code "$file" | grep -oE '\bcrate::[a-z_]+' | sed 's/crate:://' | sort -u); do
    [[ $used == "$module" ]] && continue
    if [[ " ${allowed[$module]} " != *" $used "* ]]; then
      fail "$file uses crate::$used, which $module may not depend on (allowed: ${allowed[$module]:-nothing})"
    fi
  done
done

if [[ $status -eq 0 ]]; then
  echo "check-architecture: the SDK only in src/aws/, the Lambda crates only in src/lambda/ and src/bin/, no back edge"
fi
exit "$status"
