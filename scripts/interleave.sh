#!/usr/bin/env bash
# Same-sitting comparison: nginx, the actix+awc floor and aiproxy (optionally a second aiproxy
# binary) measured in turn, round after round, with the order of the columns reversed every
# other round. `scripts/bench.sh` measures each column once for a few seconds; on two shared
# cores the machine's speed drifts between columns by as much as a code change moves ours, so
# for judging a change (or a ratio) this interleaves short measurements and reports medians.
#
# Non-streaming chat completions (the harness's body.json) in front of the repository's
# harness (scripts/bench/: our simulator as the upstream, nginx with scripts/bench/nginx.conf;
# scripts/bench/setup.sh installs nginx and oha); CPU is user+sys of the measured process tree
# from /proc, per 200 answer. --shared DIR (or BENCH_SHARED=DIR) uses an outside harness with
# the same lib.sh instead, as a cross-check.
#
# usage: scripts/interleave.sh [--rounds N] [--duration S] [--conc "1 16 128"] [--stream]
#                              [--compare BIN] [--workdir DIR] [--shared DIR]
#   --rounds N     rounds; each measures every column at every concurrency          [6]
#   --duration S   seconds of load per point (after 1 s of warm-up)                 [4]
#   --conc LIST    concurrency levels                                               ["1 16 128"]
#   --stream       streaming requests (body-stream.json) instead
#   --compare BIN  also measure this proxy-server binary (an experiment) as "compare"
#   --workdir DIR  where logs and results go                                        [mktemp -d]
#   --shared DIR   the outside harness to use instead of scripts/bench/
# Prints one line per point, then a table of medians and ratios.
set -euo pipefail
trap 'echo "interleave.sh: a command failed at line $LINENO" >&2' ERR
cd "$(dirname "$0")/.."
ROOT=$(pwd)

ROUNDS=6; DURATION=4; CONC="1 16 128"; BODY=body.json; COMPARE=""; WORK=""; SHARED=${BENCH_SHARED:-}
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2;;
    --duration) DURATION=$2; shift 2;;
    --conc) CONC=$2; shift 2;;
    --stream) BODY=body-stream.json; shift;;
    --compare) COMPARE=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2;;
    --workdir) WORK=$2; shift 2;;
    --shared) SHARED=$2; shift 2;;
    -h|--help) sed -n '/^# usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
    *) echo "unknown option $1 (try --help)" >&2; exit 64;;
  esac
done

WORK=${WORK:-$(mktemp -d -t aiproxy-interleave.XXXXXX)}
mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)
if [ -n "$SHARED" ]; then
  [ -f "$SHARED/lib.sh" ] || { echo "no harness at $SHARED (lib.sh missing)" >&2; exit 1; }
  # It writes beside its scripts and may be read-only: copied.
  H="$WORK/bench"; mkdir -p "$H"
  cp -rf "$SHARED/." "$H/"; chmod -R u+w "$H"
else
  H="$ROOT/scripts/bench"
  export BENCH_WORK="$WORK"
fi
# shellcheck source=scripts/bench/lib.sh
source "$H/lib.sh"
PASSTHROUGH_CONF=${PASSTHROUGH_CONF:-$H/proxy-nginx/nginx.conf.tmpl}
command -v oha >/dev/null && command -v nginx >/dev/null \
  || { echo "oha and nginx are needed: run scripts/bench/setup.sh --no-litellm" >&2; exit 1; }

cargo build --release --locked -q -p proxy-server --bin proxy-server --example passthrough_floor
cargo build --release --locked -q -p aiproxy-ollama-sim --bin ollama-sim
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export PROXY_BIN="$target_dir/release/proxy-server"
FLOOR_BIN="$target_dir/release/examples/passthrough_floor"
export SIM_BIN="$target_dir/release/ollama-sim"

export BENCH_PORT=${BENCH_PORT:-21500} OLLAMA_BASE_URL="http://127.0.0.1:$UP_PORT"
export BENCH_DB="$WORK/interleave.db" BENCH_ADMIN_KEY="interleave-admin-$$"
export BENCH_USER_KEY="sk-bench-8fJ2kLq9Zx4Wm7Rt1Yb6Nc3Vd5Hs0GpE"
results="$WORK/interleave-$(date -u +%Y%m%dT%H%M%S).txt"; : > "$results"

cleanup() {
  [ -n "${proxy_pid:-}" ] && { kill -TERM "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; }
  nginx_stop proxy-nginx; upstream_stop
}
trap cleanup EXIT
port_free "$UP_PORT" || { echo "port $UP_PORT is busy (another harness run?)" >&2; exit 1; }
upstream_start >/dev/null 2>&1
nginx_start proxy-nginx "$PASSTHROUGH_CONF" "$PX_PORT" >/dev/null 2>&1
bash "$ROOT/scripts/bench.sh" __candidate-setup > "$WORK/interleave-setup.log" 2>&1 \
  || { cat "$WORK/interleave-setup.log" >&2; exit 1; }

# utime+stime over the process trees, in clock ticks; the comm field is cut off first, as the
# harness's run-anchors.sh does, since a name may hold spaces.
cpu_ticks() { local t=0 p q v; for p in "$@"; do for q in $(pid_tree "$p"); do
  v=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$q/stat" 2>/dev/null); t=$((t + ${v:-0})); done; done; echo "$t"; }
load() { # load CONC SECONDS URL [--output-format json]
  local c=$1 s=$2 url=$3; shift 3
  oha --no-tui -m POST -H 'Content-Type: application/json' -H "Authorization: Bearer $BENCH_USER_KEY" \
    -D "$H/$BODY" -z "${s}s" -c "$c" "$@" "$url"
}
point() { # point COLUMN CONC URL PID...
  local column=$1 c=$2 url=$3; shift 3
  load "$c" 1 "$url" > /dev/null
  local before; before=$(cpu_ticks "$@")
  local out; out=$(load "$c" "$DURATION" "$url" --output-format json)
  local after; after=$(cpu_ticks "$@")
  echo "$out" | python3 -c '
import json, sys
column, c, ticks, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
d = json.load(sys.stdin)
ok = d["statusCodeDistribution"].get("200", 0)
other = sum(d["statusCodeDistribution"].values()) - ok
print(column, c, round(d["summary"]["requestsPerSec"]), round(ticks * 1e6 / hz / max(ok, 1), 1), other)
' "$column" "$c" "$((after - before))" "$(getconf CLK_TCK)" | tee -a "$results"
}
start_proxy() { # start_proxy BIN [ENV...]
  local bin=$1; shift
  env "$@" HOST=127.0.0.1 PORT="$BENCH_PORT" OLLAMA_BASE_URL="$OLLAMA_BASE_URL" ADMIN_API_KEY="$BENCH_ADMIN_KEY" \
    DATABASE_PATH="$BENCH_DB" RUST_LOG=warn "$bin" > "$WORK/interleave-proxy.log" 2>&1 &
  proxy_pid=$!
  wait_port "$BENCH_PORT" 30 || { cat "$WORK/interleave-proxy.log" >&2; exit 1; }
}
stop_proxy() {
  kill -TERM "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; proxy_pid=""
  local i; for i in $(seq 50); do port_free "$BENCH_PORT" && break; sleep 0.1; done
}
column() { # column NAME: nginx is already running; the others are started for their points
  local c bin
  if [ "$1" = nginx ]; then
    for c in $CONC; do point nginx "$c" "http://127.0.0.1:$PX_PORT/v1/chat/completions" "$(nginx_pid proxy-nginx)"; done
    return
  fi
  case $1 in floor) bin=$FLOOR_BIN;; aiproxy) bin=$PROXY_BIN;; compare) bin=$COMPARE;; esac
  start_proxy "$bin"
  for c in $CONC; do point "$1" "$c" "http://127.0.0.1:$BENCH_PORT/v1/chat/completions" "$proxy_pid"; done
  stop_proxy
}

columns="nginx floor aiproxy${COMPARE:+ compare}"
reversed=$(echo "$columns" | tr ' ' '\n' | tac | tr '\n' ' ')
echo "column conc req/s cpu_us_per_req non_200"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order=$columns; else order=$reversed; fi
  for name in $order; do column "$name"; done
done

python3 - "$results" <<'PY'
import collections, statistics, sys
points = collections.defaultdict(list)
for line in open(sys.argv[1]):
    column, c, rps, cpu, _ = line.split()
    points[(column, int(c))].append((float(rps), float(cpu)))
columns = [c for c in ("nginx", "floor", "aiproxy", "compare") if any(k[0] == c for k in points)]
concs = sorted({k[1] for k in points})
med = {k: (statistics.median(r for r, _ in v), statistics.median(u for _, u in v)) for k, v in points.items()}
print()
print("medians over", len(next(iter(points.values()))), "rounds: req/s | CPU µs per request")
print("| conc | " + " | ".join(columns) + " | aiproxy ÷ nginx (req/s, CPU) | aiproxy ÷ floor (req/s, CPU) |")
print("|---:|" + "---:|" * (len(columns) + 2))
for c in concs:
    cells = [f"{med[(col, c)][0]:.0f} / {med[(col, c)][1]:.1f}" for col in columns]
    ours, nginx, floor = med[("aiproxy", c)], med[("nginx", c)], med[("floor", c)]
    print(f"| {c} | " + " | ".join(cells)
          + f" | {ours[0] / nginx[0]:.2f} / {ours[1] / nginx[1]:.2f} | {ours[0] / floor[0]:.2f} / {ours[1] / floor[1]:.2f} |")
if "compare" in columns:
    print()
    for c in concs:
        ours, other = med[("aiproxy", c)], med[("compare", c)]
        print(f"c={c}: compare ÷ aiproxy: req/s {other[0] / ours[0]:.2f}, CPU {other[1] / ours[1]:.2f}")
PY
echo "(points: $results)"
