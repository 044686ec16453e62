#!/usr/bin/env bash
# Fuzzes the live API from its own /openapi.json with schemathesis (from PyPI, installed into
# .venv-fuzz on first use): a bounded number of examples per operation, a fixed seed so CI is
# repeatable, and the checks the reliability issue asks for: no server errors, and every
# response's status, content type and body as the document says.
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${FUZZ_EXAMPLES:-50}
seed=${FUZZ_SEED:-1}
source scripts/stack.sh
if [ ! -x .venv-fuzz/bin/schemathesis ]; then
  python3 -m venv .venv-fuzz
  .venv-fuzz/bin/pip install -q schemathesis
fi
user_key=sk-fuzz-8fJ2kLq9Zx4Wm7Rt1Yb6Nc3Vd5Hs0GpE
start_stack fuzz-admin-key fuzz "$user_key"
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
schema="$PROXY_URL/openapi.json"
status=0
.venv-fuzz/bin/schemathesis run "$schema" -H "Authorization: Bearer $user_key" \
  --include-tag user --include-tag public -n "$examples" --seed "$seed" --checks "$checks" || status=1
# Admin last: it deletes users.
.venv-fuzz/bin/schemathesis run "$schema" -H "Authorization: Bearer fuzz-admin-key" \
  --include-tag admin -n "$examples" --seed "$seed" --checks "$checks" || status=1
if grep -q '"level":"ERROR"\|ERROR' "$STACK_DIR/proxy.log"; then
  echo "server errors were logged:"; grep ERROR "$STACK_DIR/proxy.log" | head -20
fi
exit $status
