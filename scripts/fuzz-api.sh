#!/usr/bin/env bash
# Fuzzes the live API from its own /openapi.json with schemathesis (from PyPI, installed into
# .venv-fuzz on first use): a bounded number of examples per operation, a fixed seed so CI is
# repeatable, and the checks the reliability issue asks for: no server errors, and every
# response's status, content type and body as the document says.
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${FUZZ_EXAMPLES:-50}
seed=${FUZZ_SEED:-1}
cargo build --locked -q -p proxy-server -p aiproxy-ollama-sim
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
if [ ! -x .venv-fuzz/bin/schemathesis ]; then
  python3 -m venv .venv-fuzz
  .venv-fuzz/bin/pip install -q schemathesis
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sim_port=$(free_port); proxy_port=$(free_port)
work=$(mktemp -d)
cleanup() { kill "${sim_pid:-}" "${proxy_pid:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
user_key=sk-fuzz-8fJ2kLq9Zx4Wm7Rt1Yb6Nc3Vd5Hs0GpE
export HOST=127.0.0.1 PORT="$proxy_port" OLLAMA_BASE_URL="http://127.0.0.1:$sim_port" \
       ADMIN_API_KEY=fuzz-admin-key DATABASE_PATH="$work/proxy.db" RUST_LOG=warn
"$target_dir/debug/proxy-server" users create fuzz --unlimited --api-key "$user_key" >/dev/null
"$target_dir/debug/ollama-sim" --listen "127.0.0.1:$sim_port" >"$work/sim.log" 2>&1 &
sim_pid=$!
"$target_dir/debug/proxy-server" >"$work/proxy.log" 2>&1 &
proxy_pid=$!
python3 - "$proxy_port" <<'PY'
import sys, time, urllib.request
deadline = time.time() + 30
while True:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1)
        break
    except Exception:
        if time.time() > deadline:
            sys.exit("the proxy did not start")
        time.sleep(0.1)
PY
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
schema="http://127.0.0.1:$proxy_port/openapi.json"
status=0
.venv-fuzz/bin/schemathesis run "$schema" -H "Authorization: Bearer $user_key" \
  --include-tag user --include-tag public -n "$examples" --seed "$seed" --checks "$checks" || status=1
# Admin last: it deletes users.
.venv-fuzz/bin/schemathesis run "$schema" -H "Authorization: Bearer fuzz-admin-key" \
  --include-tag admin -n "$examples" --seed "$seed" --checks "$checks" || status=1
if grep -q '"level":"ERROR"\|ERROR' "$work/proxy.log"; then
  echo "server errors were logged:"; grep ERROR "$work/proxy.log" | head -20
fi
exit $status
