# Sourced by the scripts that drive the real binaries: builds proxy-server and ollama-sim,
# starts them on free loopback ports with a fresh database, and stops them on exit.
#
#   source scripts/stack.sh
#   start_stack ADMIN_KEY [USER_ID USER_KEY]   # optional user, created unlimited with the CLI
#   -> $PROXY_URL, $SIM_URL, $STACK_DIR (logs: proxy.log, sim.log)

cargo build --locked -q -p proxy-server -p aiproxy-ollama-sim
STACK_BIN=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

stop_stack() { kill "${STACK_SIM_PID:-}" "${STACK_PROXY_PID:-}" 2>/dev/null || true; rm -rf "${STACK_DIR:-}"; }

start_stack() {
  local admin_key=$1 sim_port proxy_port
  sim_port=$(free_port); proxy_port=$(free_port)
  STACK_DIR=$(mktemp -d)
  trap stop_stack EXIT
  export HOST=127.0.0.1 PORT="$proxy_port" OLLAMA_BASE_URL="http://127.0.0.1:$sim_port" \
         ADMIN_API_KEY="$admin_key" DATABASE_PATH="$STACK_DIR/proxy.db" RUST_LOG=warn
  if [ $# -ge 3 ]; then
    "$STACK_BIN/proxy-server" users create "$2" --unlimited --api-key "$3" >/dev/null
  fi
  "$STACK_BIN/ollama-sim" --listen "127.0.0.1:$sim_port" >"$STACK_DIR/sim.log" 2>&1 &
  STACK_SIM_PID=$!
  "$STACK_BIN/proxy-server" >"$STACK_DIR/proxy.log" 2>&1 &
  STACK_PROXY_PID=$!
  PROXY_URL="http://127.0.0.1:$proxy_port"
  SIM_URL="http://127.0.0.1:$sim_port"
  python3 - "$PROXY_URL/health" "$SIM_URL/" <<'PY'
import sys, time, urllib.request
deadline = time.time() + 30
for url in sys.argv[1:]:
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except Exception:
            if time.time() > deadline:
                sys.exit(f"nothing answers at {url}")
            time.sleep(0.1)
PY
}
