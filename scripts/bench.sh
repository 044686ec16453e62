#!/usr/bin/env bash
# Measures, in one run on this machine, the same OpenAI chat request under the same load
#   direct  -> the upstream itself (its native /api/chat)
#   nginx   -> nginx proxy_pass (pure pass-through: no auth, no accounting)
#   aiproxy -> our release proxy-server with auth, rate limits (on, very large) and accounting
#   floor   -> actix-web + awc forwarding bytes (bins/proxy-server/examples/passthrough_floor.rs)
#   litellm -> LiteLLM's proxy as shipped (and `litellm-mi`, the same with static model_info)
# non-streaming and streaming at concurrency 1, 16 and 128, memory with 2,000 open streams and
# start-up on a million usage rows, and writes docs/benchmarks.md.
# nginx and aiproxy are measured twice (nginx, aiproxy, then aiproxy, nginx) and their figures
# pooled, since the targets compare those two and the machine drifts over minutes.
#
# The harness is the repository's own (scripts/bench/): our simulator as the upstream, nginx
# with scripts/bench/nginx.conf, oha as the load generator. scripts/bench/setup.sh installs
# nginx, oha and LiteLLM when they are missing (root; apt, cargo install, pip; oha's first
# build takes minutes). --shared DIR (or BENCH_SHARED=DIR) runs an outside harness with the same
# interface instead (run-anchors.sh, setup.sh, lib.sh), copied into the work folder first, as a
# cross-check of ours.
#
# usage: scripts/bench.sh [--duration S] [--repeats N] [--warmup S] [--conc "1 16 128"]
#                         [--no-litellm] [--out FILE] [--workdir DIR] [--shared DIR]
#   --duration S   seconds of load per point                                  [5]
#   --repeats N    repeats per point; the doc shows the median               [3]
#   --warmup S     discarded load per column before its points (c=10)        [5]
#   --conc LIST    concurrency levels, used for both modes                   ["1 16 128"]
#   --no-litellm   skip the LiteLLM columns (the doc says so)
#   --out FILE     the markdown written                                       [docs/benchmarks.md]
#   --workdir DIR  keep logs and results here for re-runs                    [mktemp -d]
#   --shared DIR   measure with the outside harness in DIR instead of scripts/bench/
#   env: BENCH_SHARED (as --shared), BENCH_PORT (our port, 21500), QUIET_WAIT (s to wait for
#        other work on the machine to calm down before each column, 60), LITELLM_WORKERS (1),
#        LITELLM_VENV (target/bench/litellm-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

# The harness runs `--candidate-setup` as a command; this is it. It creates the user on a fresh
# database with the CLI, then starts the server once to raise the limits through the admin API
# (limits stay active, just far above what a benchmark can reach) and stops it again; the limits
# live in the database, so the measured start sees them.
if [ "${1:-}" = "__candidate-setup" ]; then
  : "${PROXY_BIN:?}" "${BENCH_DB:?}" "${BENCH_PORT:?}" "${OLLAMA_BASE_URL:?}" "${BENCH_ADMIN_KEY:?}" "${BENCH_USER_KEY:?}"
  # The usage journal too: a previous run's lines would be replayed into the fresh database.
  rm -f "$BENCH_DB" "$BENCH_DB-wal" "$BENCH_DB-shm" "$BENCH_DB-usage"
  export HOST=127.0.0.1 PORT="$BENCH_PORT" ADMIN_API_KEY="$BENCH_ADMIN_KEY" DATABASE_PATH="$BENCH_DB" RUST_LOG=warn
  "$PROXY_BIN" users create bench --unlimited --api-key "$BENCH_USER_KEY" >/dev/null
  "$PROXY_BIN" > "$BENCH_DB.setup.log" 2>&1 &
  setup_pid=$!
  for _ in $(seq 1 300); do
    curl -sf -o /dev/null "http://127.0.0.1:$BENCH_PORT/health" && break
    kill -0 "$setup_pid" 2>/dev/null || { cat "$BENCH_DB.setup.log" >&2; exit 1; }
    sleep 0.1
  done
  limits='{"requests_per_minute":1000000000,"requests_per_day":100000000000,"tokens_per_minute":100000000000,"tokens_per_day":1000000000000,"total_token_limit":1000000000000,"max_concurrent_requests":100000}'
  code=$(curl -s -o "$BENCH_DB.limits.json" -w '%{http_code}' -X PUT \
    "http://127.0.0.1:$BENCH_PORT/admin/users/bench/limits" \
    -H "Authorization: Bearer $BENCH_ADMIN_KEY" -H 'Content-Type: application/json' -d "$limits" || true)
  kill -TERM "$setup_pid" 2>/dev/null || true; wait "$setup_pid" || true
  [ "$code" = 200 ] || { echo "PUT limits answered $code: $(cat "$BENCH_DB.limits.json")" >&2; exit 1; }
  echo "limits set: $(cat "$BENCH_DB.limits.json")" >&2
  exit 0
fi

DURATION=5; REPEATS=3; WARMUP=5; CONC="1 16 128"; WITH_LITELLM=1
OUT="docs/benchmarks.md"; WORK=""; SHARED=${BENCH_SHARED:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2;;
    --repeats) REPEATS=$2; shift 2;;
    --warmup) WARMUP=$2; shift 2;;
    --conc) CONC=$2; shift 2;;
    --no-litellm) WITH_LITELLM=0; shift;;
    --out) OUT=$2; shift 2;;
    --workdir) WORK=$2; shift 2;;
    --shared) SHARED=$2; shift 2;;
    -h|--help) sed -n '/^# usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
    *) echo "unknown option $1 (try --help)" >&2; exit 64;;
  esac
done
export BENCH_PORT=${BENCH_PORT:-21500}
export QUIET_WAIT=${QUIET_WAIT:-60}
export PATH="$HOME/.cargo/bin:$PATH"
export LITELLM_VENV=${LITELLM_VENV:-$ROOT/target/bench/litellm-venv}
log() { echo "[bench $(date -u +%H:%M:%S)] $*" >&2; }
t_start=$(date +%s)

WORK=${WORK:-$(mktemp -d -t aiproxy-bench.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
if [ -n "$SHARED" ]; then
  [ -f "$SHARED/run-anchors.sh" ] || { echo "no harness at $SHARED (run-anchors.sh missing)" >&2; exit 1; }
  # It writes beside its scripts and may be read-only: copied, keeping an earlier .venv and
  # results in a reused --workdir.
  H="$WORK/bench"
  mkdir -p "$H"
  cp -rf "$SHARED/." "$H/"
  chmod -R u+w "$H"
  RESULTS_DIR="$H/results"
  HARNESS_LITELLM="$H/.venv/bin/litellm"
  log "outside harness, copied to $H"
else
  H="$ROOT/scripts/bench"
  export BENCH_WORK="$WORK"
  RESULTS_DIR="$WORK/results"
  HARNESS_LITELLM="$LITELLM_VENV/bin/litellm"
  # The upstream's counts of this run only, in a reused --workdir too.
  rm -f "$WORK/run/upstream-stats.jsonl"
fi

log "building proxy-server, its pass-through floor, the simulator and the load tester (release)"
cargo build --release --locked -q -p proxy-server -p proxy-loadtest -p aiproxy-ollama-sim --bins
cargo build --release --locked -q -p proxy-server --example passthrough_floor
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export PROXY_BIN="$target_dir/release/proxy-server"
FLOOR_BIN="$target_dir/release/examples/passthrough_floor"
export SIM_BIN="$target_dir/release/ollama-sim"
LOADTEST_BIN="$target_dir/release/proxy-loadtest"
t_built=$(date +%s)

log "installing what is missing (setup.sh; log: $WORK/setup.log)"
setup_rc=0
if [ -n "$SHARED" ]; then
  (cd "$H" && ./setup.sh) > "$WORK/setup.log" 2>&1 || setup_rc=$?
else
  "$H/setup.sh" $([ "$WITH_LITELLM" = 0 ] && echo --no-litellm) > "$WORK/setup.log" 2>&1 || setup_rc=$?
fi
command -v oha >/dev/null && command -v nginx >/dev/null \
  || { tail -30 "$WORK/setup.log" >&2; echo "setup.sh did not install oha/nginx" >&2; exit 1; }
LITELLM_NOTE=""
if [ "$WITH_LITELLM" = 0 ]; then
  LITELLM_NOTE="not measured: the run was started with --no-litellm"
elif [ ! -x "$HARNESS_LITELLM" ]; then
  LITELLM_NOTE="not measured: setup.sh could not install LiteLLM (exit $setup_rc); its last lines: $(tail -5 "$WORK/setup.log" | tr '\n' ' ')"
fi
t_setup=$(date +%s)

export BENCH_DB="$WORK/bench.db"
export BENCH_ADMIN_KEY="bench-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export BENCH_USER_KEY="sk-bench-8fJ2kLq9Zx4Wm7Rt1Yb6Nc3Vd5Hs0GpE"
export LITELLM_WORKERS=${LITELLM_WORKERS:-1}
self="$ROOT/scripts/bench.sh"
cand_cmd="env HOST=127.0.0.1 PORT=\$BENCH_PORT OLLAMA_BASE_URL=\$OLLAMA_BASE_URL ADMIN_API_KEY=\$BENCH_ADMIN_KEY DATABASE_PATH=\$BENCH_DB RUST_LOG=warn $PROXY_BIN"
common=(--duration "$DURATION" --repeats "$REPEATS" --warmup "$WARMUP" --conc "$CONC" --stream-conc "$CONC")
cand_args=(--candidate aiproxy --candidate-port "$BENCH_PORT" --candidate-key "$BENCH_USER_KEY"
  --candidate-setup "bash $self __candidate-setup" --candidate-cmd "$cand_cmd")
main_args=(--anchors direct,nginx "${common[@]}" "${cand_args[@]}")
litellm_args=(--anchors litellm,litellm-mi "${common[@]}")

newest_csv() { ls -t "$RESULTS_DIR"/*.csv 2>/dev/null | head -1 || true; }
# Direct, nginx and ours in one harness invocation, so they share one upstream and one sitting.
log "measuring direct, nginx and aiproxy (log: $WORK/run-main.log)"
before=$(newest_csv)
(cd "$H" && ./run-anchors.sh "${main_args[@]}") > "$WORK/run-main.log" 2>&1 \
  || { tail -40 "$WORK/run-main.log" >&2; echo "the main harness run failed" >&2; exit 1; }
MAIN_CSV=$(newest_csv); [ "$MAIN_CSV" != "$before" ] || { echo "no results from the main run" >&2; exit 1; }

# Accounting really ran: what the database recorded for the bench user over the main run (the
# second round below starts from a fresh database).
USAGE_LINE=$(HOST=127.0.0.1 PORT="$BENCH_PORT" ADMIN_API_KEY="$BENCH_ADMIN_KEY" DATABASE_PATH="$BENCH_DB" \
  "$PROXY_BIN" users list 2>&1 | grep -E '^bench\b' || true)
LIMITS_LINE=$(HOST=127.0.0.1 PORT="$BENCH_PORT" ADMIN_API_KEY="$BENCH_ADMIN_KEY" DATABASE_PATH="$BENCH_DB" \
  "$PROXY_BIN" users show bench 2>&1 | grep '^limits' || true)

# A second round of the two columns the targets compare, in the opposite order: the machine
# drifts over minutes, and nginx, aiproxy, aiproxy, nginx lays a steady drift on both alike.
# Their figures are the medians over both rounds.
log "measuring aiproxy and nginx again, in that order (log: $WORK/run-again.log)"
AGAIN_CSVS=""
for column in aiproxy nginx; do
  if [ "$column" = aiproxy ]; then
    args=(--anchors "" "${common[@]}" "${cand_args[@]}")
  else
    args=(--anchors nginx "${common[@]}")
  fi
  before=$(newest_csv)
  (cd "$H" && ./run-anchors.sh "${args[@]}") >> "$WORK/run-again.log" 2>&1 \
    || { tail -40 "$WORK/run-again.log" >&2; echo "the second round ($column) failed" >&2; exit 1; }
  csv=$(newest_csv); [ "$csv" != "$before" ] || { echo "no results from the second round" >&2; exit 1; }
  AGAIN_CSVS="$AGAIN_CSVS $csv"
done
t_main=$(date +%s)

# The floor of our HTTP stack, measured the same way: actix-web + awc forwarding bytes,
# nothing else (bins/proxy-server/examples/passthrough_floor.rs).
log "measuring the actix-web + awc floor (log: $WORK/run-floor.log)"
floor_cmd="env HOST=127.0.0.1 PORT=\$BENCH_PORT OLLAMA_BASE_URL=\$OLLAMA_BASE_URL $FLOOR_BIN"
before=$(newest_csv)
FLOOR_CSV=""
if (cd "$H" && ./run-anchors.sh --anchors "" "${common[@]}" --candidate floor --candidate-port 21600 \
      --candidate-key unused --candidate-cmd "$floor_cmd") > "$WORK/run-floor.log" 2>&1; then
  FLOOR_CSV=$(newest_csv); [ "$FLOOR_CSV" != "$before" ] || FLOOR_CSV=""
else
  tail -20 "$WORK/run-floor.log" >&2; log "the floor run failed; the doc says so"
fi
t_floor=$(date +%s)

# LiteLLM separately: a LiteLLM that fails to start ends a harness invocation, and must not
# take our column with it.
LITELLM_CSV=""
if [ -z "$LITELLM_NOTE" ]; then
  log "measuring LiteLLM (log: $WORK/run-litellm.log)"
  before=$(newest_csv)
  if (cd "$H" && ./run-anchors.sh "${litellm_args[@]}") > "$WORK/run-litellm.log" 2>&1; then :; else
    LITELLM_NOTE="the LiteLLM run failed (points measured before the failure are shown); last lines of its log: $(grep -v '^    ' "$WORK/run-litellm.log" | tail -5 | tr '\n' ' ')"
  fi
  LITELLM_CSV=$(newest_csv); [ "$LITELLM_CSV" != "$before" ] || LITELLM_CSV=""
fi
t_litellm=$(date +%s)

# Memory with 2,000 open streams, and start-up on a database of a million usage rows. Our
# simulator is the upstream here: its per-token delay keeps the streams open.
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
start_proxy() { # start_proxy DB PORT OLLAMA_URL -> pid in $proxy_pid
  env HOST=127.0.0.1 PORT="$2" OLLAMA_BASE_URL="$3" ADMIN_API_KEY="$BENCH_ADMIN_KEY" DATABASE_PATH="$1" \
    OLLAMA_MAX_CONNECTIONS=4096 RUST_LOG=warn "$PROXY_BIN" > "$WORK/extra-proxy.log" 2>&1 &
  proxy_pid=$!
}
stop_pid() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
EXTRA_PORT=21710 SIM_PORT=21711 STREAMS=2000
"$SIM_BIN" --listen "127.0.0.1:$SIM_PORT" --workers 2 --token-delay-ms 100 > "$WORK/extra-sim.log" 2>&1 &
sim_pid=$!
streams_db="$WORK/streams.db"; rm -f "$streams_db"*
HOST=127.0.0.1 PORT=$EXTRA_PORT ADMIN_API_KEY=$BENCH_ADMIN_KEY DATABASE_PATH=$streams_db \
  "$PROXY_BIN" users create streams --unlimited --api-key "$BENCH_USER_KEY" > /dev/null
start_proxy "$streams_db" $EXTRA_PORT "http://127.0.0.1:$SIM_PORT"
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$EXTRA_PORT/health" && break; sleep 0.1; done
sleep 1
RSS_IDLE_KIB=$(rss_kib $proxy_pid)
log "memory with $STREAMS open streams (100 ms per token)"
prompt=$(printf 'w%d ' $(seq 1 40))
"$LOADTEST_BIN" --url "http://127.0.0.1:$EXTRA_PORT" --key "$BENCH_USER_KEY" --stream --prompt "$prompt" \
  --concurrency $STREAMS --threads 2 --duration 20s --timeout 60s --json > "$WORK/streams.json" 2> "$WORK/streams.err" &
lt_pid=$!
RSS_PEAK_KIB=0 OPEN_PEAK=0
while kill -0 $lt_pid 2>/dev/null; do
  r=$(rss_kib $proxy_pid); [ "$r" -gt "$RSS_PEAK_KIB" ] && RSS_PEAK_KIB=$r
  o=$(curl -s -H "Authorization: Bearer $BENCH_ADMIN_KEY" "http://127.0.0.1:$EXTRA_PORT/metrics" \
      | awk '$1=="aiproxy_open_streams"{print int($2)}')
  [ -n "$o" ] && [ "$o" -gt "$OPEN_PEAK" ] && OPEN_PEAK=$o
  sleep 0.5
done
wait $lt_pid || true
sleep 2
RSS_AFTER_KIB=$(rss_kib $proxy_pid)
STREAMS_SUMMARY=$(python3 - "$WORK/streams.json" <<'SUMMARY' 2>/dev/null || echo "load test output unreadable: $(head -c 300 "$WORK/streams.err")"
import json, sys
d = json.load(open(sys.argv[1]))
ttft = (d.get("time_to_first_token_ms") or {}).get("p50")
errors = ", ".join(f"{k}: {v}" for k, v in (d.get("errors") or {}).items()) or "no errors"
print(f"{d['successes']} streams completed, {d['failures']} failed ({errors}); time to first token p50 {ttft} ms")
SUMMARY
)
stop_pid $proxy_pid
stop_pid $sim_pid

log "start-up on a database of a million usage rows"
"$SIM_BIN" --listen "127.0.0.1:$SIM_PORT" --workers 2 > "$WORK/extra-sim.log" 2>&1 &
sim_pid=$!
big_db="$WORK/big.db"; rm -f "$big_db"*
HOST=127.0.0.1 PORT=$EXTRA_PORT ADMIN_API_KEY=$BENCH_ADMIN_KEY DATABASE_PATH=$big_db \
  "$PROXY_BIN" users create big --unlimited --api-key "$BENCH_USER_KEY" > /dev/null
python3 - "$big_db" <<'SEED'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
now = int(time.time() * 1000)
span = 30 * 86_400_000          # a month of traffic; the last day (~33k rows) feeds the rate windows
rows = 1_000_000
def gen():
    for i in range(rows):
        at = now - span + i * span // rows
        yield (f"seed-{i}", "big", "llama3.2", "chat.completions", 20, 30, 50, "ok", 100, at)
db.execute("BEGIN")
db.executemany("INSERT INTO usage (request_id, user_id, model, endpoint, prompt_tokens, completion_tokens,"
               " total_tokens, status, duration_ms, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)", gen())
db.execute("INSERT INTO user_totals VALUES ('big', ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET"
           " requests = excluded.requests, prompt_tokens = excluded.prompt_tokens,"
           " completion_tokens = excluded.completion_tokens, total_tokens = excluded.total_tokens",
           (rows, 20 * rows, 30 * rows, 50 * rows))
db.commit()
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.close()
SEED
STARTUP_MS=""
for _ in 1 2 3; do
  t0=$(date +%s%N)
  start_proxy "$big_db" $EXTRA_PORT "http://127.0.0.1:$SIM_PORT"
  for _ in $(seq 1 2000); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $BENCH_USER_KEY" \
      -H 'Content-Type: application/json' -d '{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}' \
      "http://127.0.0.1:$EXTRA_PORT/v1/chat/completions" 2>/dev/null || true)
    [ "$code" = 200 ] && break
    sleep 0.005
  done
  t1=$(date +%s%N)
  STARTUP_MS="$STARTUP_MS $(( (t1 - t0) / 1000000 ))"
  stop_pid $proxy_pid
done
BIG_ROWS=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from usage").fetchone()[0])' "$big_db")
stop_pid $sim_pid
rm -f "$big_db"* "$streams_db"*
t_end=$(date +%s)

# Requests the upstream did not expect (a path it does not serve): the outside harness logs
# them, our simulator counts them under NotFound.
unexpected=""
if [ -n "$SHARED" ]; then
  [ -s "$H/run/upstream/unexpected.log" ] && unexpected=$(sort "$H/run/upstream/unexpected.log" | uniq -c | head -5)
elif [ -s "$WORK/run/upstream-stats.jsonl" ]; then
  unexpected=$(python3 - "$WORK/run/upstream-stats.jsonl" <<'COUNT'
import json, sys
total = 0
for line in open(sys.argv[1]):
    if line.strip():
        total += json.loads(line).get("requests", {}).get("not_found", 0) or 0
print(f"{total} requests to paths the simulator does not serve" if total else "")
COUNT
)
fi
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)

mkdir -p "$(dirname "$OUT")"
export MAIN_CSV AGAIN_CSVS LITELLM_CSV FLOOR_CSV LITELLM_NOTE USAGE_LINE LIMITS_LINE unexpected commit DURATION REPEATS WARMUP CONC \
  t_start t_built t_setup t_main t_floor t_litellm t_end STREAMS RSS_IDLE_KIB RSS_PEAK_KIB RSS_AFTER_KIB OPEN_PEAK \
  STREAMS_SUMMARY STARTUP_MS BIG_ROWS
export CMD_LINE="scripts/bench.sh --duration $DURATION --repeats $REPEATS --warmup $WARMUP --conc \"$CONC\"$([ "$WITH_LITELLM" = 0 ] && echo ' --no-litellm')"
shown_cmd=${cand_cmd//"$ROOT"\//}
shown_cand="--candidate aiproxy --candidate-port $BENCH_PORT --candidate-key $BENCH_USER_KEY --candidate-setup 'bash scripts/bench.sh __candidate-setup' --candidate-cmd '$shown_cmd'"
shown_common="${common[*]:0:6} --conc \"$CONC\" --stream-conc \"$CONC\""
if [ -n "$SHARED" ]; then
  runner="./run-anchors.sh"
  export HARNESS_SETUP="./setup.sh" HARNESS_WHERE="in a copy of the outside harness ($SHARED):"
  export UPSTREAM_DESC="the outside harness's fake Ollama upstream (nginx + Lua: a fixed answer of about 400 bytes, or 20 NDJSON chunks plus a final one when streaming; no delay between chunks)"
else
  runner="scripts/bench/run-anchors.sh"
  export HARNESS_SETUP="scripts/bench/setup.sh" HARNESS_WHERE="and the repository's harness:"
  export UPSTREAM_DESC="our Ollama simulator (\`ollama-sim\`, release build; its answer echoes the user message: one JSON object, or one NDJSON line per word plus a final one when streaming; no delay between lines)"
fi
export MAIN_CMD="$runner --anchors direct,nginx $shown_common $shown_cand
$runner --anchors '' $shown_common $shown_cand   # second round: aiproxy,
$runner --anchors nginx $shown_common            # then nginx"
export LITELLM_CMD="LITELLM_WORKERS=$LITELLM_WORKERS $runner --anchors litellm,litellm-mi ${common[*]:0:6} --conc \"$CONC\" --stream-conc \"$CONC\""
export BODY_TEXT="$(cat "$H/body.json")"
export RUSTC_VERSION="$(rustc --version)" PROXY_BIN_REL="${PROXY_BIN#"$ROOT"/}"
python3 - "$OUT" <<'PY'
import csv, os, re, statistics, sys
from collections import OrderedDict

out = sys.argv[1]
env = os.environ
main_cmd, litellm_cmd = env["MAIN_CMD"], env["LITELLM_CMD"]

def load(path):
    if not path:
        return [], ""
    rows = list(csv.DictReader(open(path)))
    meta_path = path[:-4] + ".meta"
    return rows, open(meta_path).read() if os.path.exists(meta_path) else ""

main_rows, main_meta = load(env["MAIN_CSV"])
again_rows = [r for path in env.get("AGAIN_CSVS", "").split() for r in load(path)[0]]
lite_rows, lite_meta = load(env.get("LITELLM_CSV", ""))
floor_rows, floor_meta = load(env.get("FLOOR_CSV", ""))
groups = OrderedDict()
for r in main_rows + again_rows + floor_rows + lite_rows:
    groups.setdefault((r["anchor"], r["mode"], int(r["conc"])), []).append(r)

def med(anchor, mode, c, key):
    rs = groups.get((anchor, mode, c))
    if not rs:
        return None
    vals = [float(r[key]) for r in rs if r[key] not in ("", "nan")]
    return statistics.median(vals) if vals else None

def meta(pattern, text=main_meta, default="?"):
    m = re.search(pattern, text, re.M)
    return m.group(1).strip() if m else default

anchors = [a for a in ("direct", "nginx", "floor", "aiproxy", "litellm", "litellm-mi")
           if any(k[0] == a for k in groups)]
label = {"direct": "direct", "nginx": "nginx", "floor": "actix+awc floor", "aiproxy": "**aiproxy**",
         "litellm": "LiteLLM", "litellm-mi": "LiteLLM (tuned)"}
concs = [int(c) for c in env["CONC"].split()]
points = [(m, c) for m in ("json", "stream") for c in concs]
mode_name = {"json": "non-stream", "stream": "stream"}

def fmt_rps(v): return "—" if v is None else f"{v:.0f}"
def fmt_ms(v): return "—" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.0f}")
def fmt_us(v): return "—" if v is None else f"{v:.0f}"
def ratio(a, b): return "—" if a is None or b in (None, 0) else f"{a / b:.2f}"

L = []
w = L.append
dur = lambda a, b: int(env[b]) - int(env[a])
total = dur("t_start", "t_end")
w("# Benchmarks")
w("")
w("Generated by `scripts/bench.sh`; every figure below comes from its last run. Do not edit by hand:")
w("run the script again (it rewrites this file).")
w("The targets, how to measure and profile, and what makes the proxy fast: `docs/performance.md`.")
w("")
w("The same OpenAI chat request, under the same load, on the same machine, in front of the same")
w(f"upstream, {env['UPSTREAM_DESC']}, through:")
w("")
w("- **direct** — straight to the upstream's native `/api/chat` (the floor; no proxy at all);")
w("- **nginx** — nginx `proxy_pass` to the upstream (pure pass-through: no auth, no accounting, no translation);")
w("- **aiproxy** — our `proxy-server` (release build) with every feature on: Bearer-key auth, rate limits")
w("  active (set through `PUT /admin/users/bench/limits` to values no run can reach), the")
w("  OpenAI ↔ Ollama translation and usage accounting into SQLite;")
w("- **actix+awc floor** — `bins/proxy-server/examples/passthrough_floor.rs`: actix-web in front, awc behind,")
w("  the body forwarded unchanged and nothing else. What our stack costs before any feature; measured in")
w("  a second harness invocation right after the first (same upstream, same load);")
w("- **LiteLLM** — LiteLLM's proxy as shipped (model alias + master key, no database), and **LiteLLM (tuned)**,")
w("  the same with static `model_info`/zero pricing in its config, which saves it a per-request model-info lookup.")
w("")
w(f"Run {meta(r'^date_utc=(.*)$')}, commit `{env['commit'][:12]}`, total wall time {total // 60} min {total % 60} s")
w(f"(build {dur('t_start', 't_built')} s, installs {dur('t_built', 't_setup')} s, "
  f"direct + nginx + aiproxy {dur('t_setup', 't_main')} s, floor {dur('t_main', 't_floor')} s, "
  f"LiteLLM {dur('t_floor', 't_litellm')} s, memory and start-up {dur('t_litellm', 't_end')} s).")
w("")
w("## Machine")
w("")
cpus, cpu_model, mem = meta(r"^cpus=(\S+)"), meta(r"^cpu_model=(.*)$"), meta(r"mem_gib=(\S+)")
os_name, kernel = meta(r"os=(.*)$"), meta(r"^kernel=(\S+)")
oha, nginx = meta(r"^oha=(.*?) nginx="), meta(r"nginx=(.*)$")
litellm_version = meta(r"^litellm=(.*)$", lite_meta) if lite_rows else "not measured"
up_workers = meta(r"up_workers=(\S+)")
litellm_workers = meta(r"litellm_workers=(\S+)", lite_meta) if lite_rows else "—"
w(f"- {cpus} CPUs ({cpu_model}), {mem} GiB RAM; {os_name}, kernel {kernel}; {env['RUSTC_VERSION']}.")
w(f"- Load generator {oha}; nginx {nginx}; LiteLLM {litellm_version}.")
px_workers = meta(r"px_workers=(\S+)")
w(f"- Upstream {up_workers} workers, nginx {px_workers} worker processes; aiproxy's default worker count "
  f"(one for every two cores); LiteLLM {litellm_workers} worker(s).")
w("- The load generator, the upstream and the proxy under test share the same cores, so absolute numbers")
w("  compare only within this run; *proxy CPU µs/req* is the figure least sensitive to that sharing.")
w("  Before each column the harness waits (up to `QUIET_WAIT` s) for other work on the machine to use")
w("  under 10 % of the CPUs; the *foreign CPU* column shows how much other work ran during each point.")
w("")
w("## How it was measured")
w("")
w(f"Per column: {env['WARMUP']} s warm-up at c=10, then each point for {env['DURATION']} s × {env['REPEATS']} "
  f"repeat{'s (median shown)' if int(env['REPEATS']) > 1 else ''}. nginx and aiproxy, the two columns the")
w("targets compare, run twice, in the order nginx, aiproxy, aiproxy, nginx, so that the machine's drift")
w(f"over those minutes weighs on both alike; their figures are medians over all {2 * int(env['REPEATS'])} "
  "repeats. Short points on shared cores: the")
w("*req/s per repeat* column under *Every point* shows how much repeats differ. Per point:")
w("`oha --no-tui --output-format json -w -m POST -H 'Content-Type: application/json' "
  "-H 'Authorization: Bearer <key>' -D body.json -z <S>s -c <C> <url>`")
w("(HTTP/1.1 keep-alive, one connection per concurrent worker). Streaming latency is time to last byte.")
w("*Proxy CPU µs/req* is utime + stime of the proxy's process tree during the point ÷ successful requests")
w("(for *direct* it is the upstream's own). Request body (`body.json`; `body-stream.json` has `\"stream\":true`):")
w(f"`{env['BODY_TEXT'].strip()}`,")
w("sent to `/api/chat` for *direct* and to `/v1/chat/completions` for the others.")
w("")
w("Commands (paths relative to the repository; the script passes absolute ones):")
w("")
w("```sh")
w(env["CMD_LINE"] + "   # this script; it ran, " + env["HARNESS_WHERE"])
w(env["HARNESS_SETUP"])
w(main_cmd)
if env.get("LITELLM_CSV"):
    w(litellm_cmd)
w("```")
w("")

w("## Results")
w("")
w("Throughput (requests/s, higher is better) and the ratios of ours to the anchors (the floor runs")
w("on our own stack, so it speeds up and slows down with the machine as ours does: ours ÷ floor")
w("moves less from run to run than ours ÷ nginx):")
w("")
w("| mode | conc | " + " | ".join(label[a] for a in anchors)
  + " | aiproxy ÷ nginx | aiproxy ÷ floor | aiproxy ÷ direct |")
w("|---|---:|" + "---:|" * len(anchors) + "---:|---:|---:|")
for m, c in points:
    vals = {a: med(a, m, c, "rps") for a in anchors}
    w(f"| {mode_name[m]} | {c} | " + " | ".join(fmt_rps(vals[a]) for a in anchors)
      + f" | {ratio(vals.get('aiproxy'), vals.get('nginx'))} | {ratio(vals.get('aiproxy'), vals.get('floor'))}"
      + f" | {ratio(vals.get('aiproxy'), vals.get('direct'))} |")
w("")
w("Latency p50 / p99 in ms (lower is better; streaming: time to last byte) and ours ÷ the anchors:")
w("")
w("| mode | conc | " + " | ".join(label[a] for a in anchors)
  + " | p50 aiproxy ÷ nginx | p99 aiproxy ÷ nginx | p50 aiproxy ÷ direct | p99 aiproxy ÷ direct |")
w("|---|---:|" + "---:|" * len(anchors) + "---:|---:|---:|---:|")
for m, c in points:
    p50 = {a: med(a, m, c, "p50_ms") for a in anchors}
    p99 = {a: med(a, m, c, "p99_ms") for a in anchors}
    w(f"| {mode_name[m]} | {c} | " + " | ".join(f"{fmt_ms(p50[a])} / {fmt_ms(p99[a])}" for a in anchors)
      + f" | {ratio(p50.get('aiproxy'), p50.get('nginx'))} | {ratio(p99.get('aiproxy'), p99.get('nginx'))}"
      + f" | {ratio(p50.get('aiproxy'), p50.get('direct'))} | {ratio(p99.get('aiproxy'), p99.get('direct'))} |")
w("")
w("Proxy CPU per request in µs (the proxy's own processes; *direct* = the upstream's) and ours ÷ nginx")
w("and ÷ the floor:")
w("")
w("| mode | conc | " + " | ".join(label[a] for a in anchors) + " | aiproxy ÷ nginx | aiproxy ÷ floor |")
w("|---|---:|" + "---:|" * len(anchors) + "---:|---:|")
for m, c in points:
    cpu = {a: med(a, m, c, "proxy_cpu_us_per_req") for a in anchors}
    w(f"| {mode_name[m]} | {c} | " + " | ".join(fmt_us(cpu[a]) for a in anchors)
      + f" | {ratio(cpu.get('aiproxy'), cpu.get('nginx'))} | {ratio(cpu.get('aiproxy'), cpu.get('floor'))} |")
w("")
rss = {}
for text in (main_meta, lite_meta):
    for kind in ("idle", "peak"):
        for a, v in re.findall(rf"rss_{kind}_mib\[(.+?)\]=([\d.]+)", text):
            rss.setdefault(a, {})[kind] = v
w("Memory (RSS of the proxy's process tree, MiB, idle after start / peak at the end):")
w("")
w("| " + " | ".join(label[a] for a in anchors if a in rss) + " |")
w("|" + "---:|" * sum(1 for a in anchors if a in rss))
w("| " + " | ".join(f"{rss[a].get('idle', '?')} / {rss[a].get('peak', '?')}" for a in anchors if a in rss) + " |")
w("")
w("## Memory with open streams, and start-up on a big database")
w("")
kib = lambda k: f"{int(k) / 1024:.1f}"
w(f"Our simulator (`ollama-sim --token-delay-ms 100`) behind `proxy-server`, and `proxy-loadtest --stream "
  f"--concurrency {env['STREAMS']} --threads 2 --duration 20s` with a 40-word prompt (streams of about 4 s) "
  f"against it (`OLLAMA_MAX_CONNECTIONS=4096`, so every stream has its upstream connection):")
w("")
w("| idle after start | peak during the run | 2 s after the run | most streams open at once (`aiproxy_open_streams`) |")
w("|---:|---:|---:|---:|")
w(f"| {kib(env['RSS_IDLE_KIB'])} MiB | {kib(env['RSS_PEAK_KIB'])} MiB | {kib(env['RSS_AFTER_KIB'])} MiB | {env['OPEN_PEAK']} |")
w("")
w(f"Load test: {env['STREAMS_SUMMARY']}.")
w("")
starts = [int(x) for x in env["STARTUP_MS"].split()]
w(f"Start-up to the first answered chat completion, on a database of {int(env['BIG_ROWS']):,} usage rows "
  "(one month of traffic for one user, seeded with Python's sqlite3; the last day, about 33,000 rows, "
  "rebuilds the rate-limit windows at start): from the process start until a `POST /v1/chat/completions` "
  f"polled every 5 ms answers 200, three starts: {', '.join(f'{x} ms' for x in starts)} "
  f"(median {statistics.median(starts):.0f} ms).")
w("")
w("## Every point")
w("")
w("| column | mode | conc | req/s | p50 ms | p99 ms | proxy CPU µs/req | requests | non-200 | foreign CPU % | req/s per repeat |")
w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for (a, m, c), rs in groups.items():
    non200 = sum(int(r["non200"]) for r in rs)
    reqs = sum(int(r["requests"]) for r in rs)
    foreign = max(float(r["foreign_cpu_pct"] or "nan") for r in rs)
    runs = " / ".join(f"{float(r['rps']):.0f}" for r in rs)
    w(f"| {a} | {mode_name[m]} | {c} | {fmt_rps(med(a, m, c, 'rps'))} | {fmt_ms(med(a, m, c, 'p50_ms'))} | "
      f"{fmt_ms(med(a, m, c, 'p99_ms'))} | {fmt_us(med(a, m, c, 'proxy_cpu_us_per_req'))} | {reqs} | {non200} | "
      f"{foreign:.0f} | {runs} |")
w("")
w("## Checks")
w("")
ours_ok = sum(int(r["requests"]) for r in main_rows if r["anchor"] == "aiproxy")
ours_bad = sum(int(r["non200"]) for r in main_rows if r["anchor"] == "aiproxy")
w(f"- aiproxy answered {ours_ok} measured requests with 200 and {ours_bad} otherwise. The bench user's limits")
w(f"  during the run (`proxy-server users show bench`): {env.get('LIMITS_LINE') or 'not read'}.")
w(f"- Accounting: after the run the database held, for the bench user (`proxy-server users list`: user, key")
w(f"  prefix, requests, tokens): `{(env.get('USAGE_LINE') or 'not read').replace(chr(9), ' ')}` — this includes the")
w("  warm-up and the harness's readiness and sample requests, which are not in the measured counts.")
note = env.get("LITELLM_NOTE", "")
w(f"- LiteLLM: {note if note else 'measured (see the columns above).'}")
unexpected = env.get("unexpected", "").strip()
w(f"- Requests the upstream did not expect (wrong path): "
  f"{'none.' if not unexpected else '`' + ' ; '.join(l.strip() for l in unexpected.splitlines()) + '`'}")
w("")
open(out, "w").write("\n".join(L))
PY
log "wrote $OUT in $(( (t_end - t_start) / 60 )) min $(( (t_end - t_start) % 60 )) s (harness copy and logs: $WORK)"
