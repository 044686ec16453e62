#!/usr/bin/env bash
# Drives the real proxy-server (in front of the real ollama-sim) with the official OpenAI
# Python SDK, unchanged. Installs the SDK into .venv-sdk from PyPI on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -q -p proxy-server -p aiproxy-ollama-sim
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
if [ ! -x .venv-sdk/bin/python ]; then
  python3 -m venv .venv-sdk
  .venv-sdk/bin/pip install -q openai
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sim_port=$(free_port); proxy_port=$(free_port)
work=$(mktemp -d)
cleanup() { kill "${sim_pid:-}" "${proxy_pid:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$target_dir/debug/ollama-sim" --listen "127.0.0.1:$sim_port" >"$work/sim.log" 2>&1 &
sim_pid=$!
env HOST=127.0.0.1 PORT="$proxy_port" OLLAMA_BASE_URL="http://127.0.0.1:$sim_port" \
    ADMIN_API_KEY=sdk-test-admin-key DATABASE_PATH="$work/proxy.db" RUST_LOG=warn \
    "$target_dir/debug/proxy-server" >"$work/proxy.log" 2>&1 &
proxy_pid=$!
python3 - "$proxy_port" "$sim_port" <<'PY'
import sys, time, urllib.request
deadline = time.time() + 30
for port, path in ((sys.argv[1], "/health"), (sys.argv[2], "/")):
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1)
            break
        except Exception:
            if time.time() > deadline:
                sys.exit(f"nothing answers on port {port}")
            time.sleep(0.1)
PY
PROXY_URL="http://127.0.0.1:$proxy_port" SIM_URL="http://127.0.0.1:$sim_port" ADMIN_KEY=sdk-test-admin-key \
  .venv-sdk/bin/python tests/sdk/openai_python.py || { cat "$work/proxy.log"; exit 1; }
