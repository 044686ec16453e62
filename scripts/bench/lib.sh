#!/usr/bin/env bash
# Helpers for the benchmark scripts; source it, do not run it. Everything listens on and sends
# to 127.0.0.1 only. Files written go under $BENCH_WORK (default target/bench/work): process
# logs and pid files in run/, measurements in results/.
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_WORK="${BENCH_WORK:-$(cd "$BENCH/../.." && pwd)/target/bench/work}"
RUN="$BENCH_WORK/run"
RESULTS="$BENCH_WORK/results"
UP_PORT="${UP_PORT:-21434}"            # the upstream: our Ollama simulator
PX_PORT="${PX_PORT:-21080}"            # nginx pass-through
LITELLM_PORT="${LITELLM_PORT:-21400}"
UP_WORKERS="${UP_WORKERS:-$(nproc)}"   # simulator worker threads
PX_WORKERS="${PX_WORKERS:-$(nproc)}"   # nginx worker processes
CHUNK_DELAY_MS="${CHUNK_DELAY_MS:-0}"  # simulator delay between streamed lines
LITELLM_WORKERS="${LITELLM_WORKERS:-1}"
LITELLM_VENV="${LITELLM_VENV:-$(cd "$BENCH/../.." && pwd)/target/bench/litellm-venv}"
MASTER_KEY="${MASTER_KEY:-sk-bench-master-0001}"
# The nginx pass-through configuration (a template: @NAME@ placeholders).
PASSTHROUGH_CONF="$BENCH/nginx.conf"
export PATH="$HOME/.cargo/bin:$PATH"

log() { echo "[bench $(date -u +%H:%M:%S)] $*" >&2; }

render() { # render TEMPLATE OUT
  sed -e "s#@RUN@#$RUN#g" -e "s#@UP_PORT@#$UP_PORT#g" -e "s#@PX_PORT@#$PX_PORT#g" \
      -e "s#@PX_WORKERS@#$PX_WORKERS#g" "$1" > "$2"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # wait_port PORT SECONDS
  local i; for ((i = 0; i < $2 * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

pid_tree() { # the pid and all its descendants
  local c; echo "$1"
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do pid_tree "$c"; done
}

tree_cpu_ticks() { # utime + stime, with reaped children's, over the tree, in clock ticks
  local t=0 p v
  for p in $(pid_tree "$1"); do
    # The command name may hold spaces: count fields after its closing parenthesis.
    v=$(awk '{sub(/^.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$p/stat" 2>/dev/null)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

tree_mem_mib() { # tree_mem_mib PID VmRSS|VmHWM: the field summed over the tree, in MiB
  local total=0 p v
  for p in $(pid_tree "$1"); do
    v=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null); total=$((total + ${v:-0}))
  done
  awk -v k="$total" 'BEGIN {printf "%.1f", k / 1024}'
}

# A process of ours: proc_start NAME PORT CMD... (own session, log in $RUN/NAME.log).
proc_start() {
  local name=$1 port=$2; shift 2
  port_free "$port" || { log "port $port is busy"; return 1; }
  mkdir -p "$RUN"
  setsid bash -c 'exec "$@"' _ "$@" > "$RUN/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}
proc_pid() { cat "$RUN/$1.pid" 2>/dev/null; }
proc_stop() { # TERM the session we started, KILL it after 10 s
  local pid i; pid=$(proc_pid "$1"); [ -z "$pid" ] && return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null
  rm -f "$RUN/$1.pid"; return 0
}

# nginx with a rendered template: nginx_start NAME TEMPLATE PORT (master pid in $RUN/NAME/).
nginx_start() {
  local name=$1 d="$RUN/$1"
  port_free "$3" || { log "port $3 is busy"; return 1; }
  mkdir -p "$d"; render "$2" "$d/nginx.conf"
  nginx -t -q -p "$d" -e "$d/error.log" -c "$d/nginx.conf" || return 1
  nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" || return 1
  wait_port "$3" 10 || { log "$name did not listen on $3"; return 1; }
}
nginx_pid() { cat "$RUN/$1/nginx.pid" 2>/dev/null; }
nginx_stop() { # graceful stop of the master we started, TERM after 5 s
  local pid i; pid=$(nginx_pid "$1") || return 0; [ -z "$pid" ] && return 0
  kill -QUIT "$pid" 2>/dev/null
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
  rm -f "$RUN/$1/nginx.pid"; return 0
}

# The upstream: our simulator (`ollama-sim`, the release build in $SIM_BIN).
upstream_start() {
  : "${SIM_BIN:?SIM_BIN must point at the ollama-sim binary}"
  proc_start upstream "$UP_PORT" "$SIM_BIN" --listen "127.0.0.1:$UP_PORT" --workers "$UP_WORKERS" \
    --token-delay-ms "$CHUNK_DELAY_MS" || return 1
  wait_port "$UP_PORT" 30 || { log "the simulator did not listen on $UP_PORT"; cat "$RUN/upstream.log" >&2; return 1; }
}
upstream_pid() { proc_pid upstream; }
upstream_stop() {
  # What the simulator served, by endpoint (paths it does not know under NotFound), one line
  # per start, for the run's checks.
  [ -n "$(proc_pid upstream)" ] || return 0
  { curl -s -m 5 "http://127.0.0.1:$UP_PORT/sim/stats" 2>/dev/null || true; echo; } >> "$RUN/upstream-stats.jsonl"
  proc_stop upstream
}

wait_ready() { # wait_ready URL KEY BODY_FILE SECONDS: until a POST answers 200
  local i code=""; for ((i = 0; i < $4 * 2; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -m 10 -X POST "$1" \
      -H "Authorization: Bearer $2" -H 'Content-Type: application/json' --data-binary @"$3" || true)
    [ "$code" = 200 ] && return 0; sleep 0.5; done
  log "not ready: $1 (last status $code)"; return 1
}
