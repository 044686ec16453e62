#!/usr/bin/env bash
# Measures the same OpenAI chat request through several columns in front of one upstream, our
# Ollama simulator, and writes one CSV row per point to $BENCH_WORK/results/<stamp>.csv (and
# what was measured on, to <stamp>.meta). scripts/bench.sh drives it and writes the report.
#
# usage: scripts/bench/run-anchors.sh [options]
#   --anchors LIST            comma list of direct,nginx,litellm,litellm-mi ("" for none)
#   --duration S              seconds per measured point                          [10]
#   --repeats N               repeats of every point                              [3]
#   --warmup S                discarded load per column before its points (c=10)  [5]
#   --conc "1 16 128"         non-streaming concurrency levels
#   --stream-conc "16"        streaming concurrency levels ("" for none)
#   --candidate NAME          one more column: a proxy the script starts
#   --candidate-cmd CMD       its start command (bash; OLLAMA_BASE_URL and BENCH_PORT exported)
#   --candidate-port PORT     where it listens (127.0.0.1)
#   --candidate-path PATH     its chat endpoint                                   [/v1/chat/completions]
#   --candidate-key KEY       the Bearer key to send                              [sk-bench-candidate]
#   --candidate-setup CMD     run once before the start (create the user, …)
#   env: SIM_BIN (the ollama-sim binary, required), BENCH_WORK, UP_PORT, PX_PORT, LITELLM_PORT,
#        UP_WORKERS/PX_WORKERS (nproc), CHUNK_DELAY_MS (0), LITELLM_WORKERS (1), LITELLM_VENV,
#        QUIET_MAX/QUIET_WAIT (before each column wait up to QUIET_WAIT s, 300, for other
#        work to use under QUIET_MAX %, 10, of the CPUs)
# Needs oha and nginx (scripts/bench/setup.sh installs them), LiteLLM for its columns.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ANCHORS="direct,nginx,litellm,litellm-mi"
DURATION=10; REPEATS=3; WARMUP=5; CONC="1 16 128"; STREAM_CONC="16"
CAND_NAME=""; CAND_CMD=""; CAND_PORT=""; CAND_PATH="/v1/chat/completions"
CAND_KEY="sk-bench-candidate"; CAND_SETUP=""
QUIET_MAX="${QUIET_MAX:-10}"; QUIET_WAIT="${QUIET_WAIT:-300}"
while [ $# -gt 0 ]; do
  case "$1" in
    --anchors) ANCHORS=$2; shift 2;;
    --duration) DURATION=$2; shift 2;;
    --repeats) REPEATS=$2; shift 2;;
    --warmup) WARMUP=$2; shift 2;;
    --conc) CONC=$2; shift 2;;
    --stream-conc) STREAM_CONC=$2; shift 2;;
    --candidate) CAND_NAME=$2; shift 2;;
    --candidate-cmd) CAND_CMD=$2; shift 2;;
    --candidate-port) CAND_PORT=$2; shift 2;;
    --candidate-path) CAND_PATH=$2; shift 2;;
    --candidate-key) CAND_KEY=$2; shift 2;;
    --candidate-setup) CAND_SETUP=$2; shift 2;;
    -h|--help) sed -n '/^# usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
    *) echo "unknown option $1 (try --help)" >&2; exit 64;;
  esac
done
if [ -n "$CAND_NAME" ] && { [ -z "$CAND_CMD" ] || [ -z "$CAND_PORT" ]; }; then
  echo "--candidate needs --candidate-cmd and --candidate-port" >&2; exit 64
fi
command -v oha >/dev/null && command -v nginx >/dev/null \
  || { echo "oha and nginx are needed: run scripts/bench/setup.sh" >&2; exit 1; }

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$RESULTS/raw/$STAMP"; mkdir -p "$RAW" "$RUN"
CSV="$RESULTS/$STAMP.csv"; META="$RESULTS/$STAMP.meta"
echo "anchor,mode,conc,rep,rps,p50_ms,p99_ms,success_rate,non200,proxy_cpu_us_per_req,requests,foreign_cpu_pct,busy_cpu_pct" > "$CSV"
{
  echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpus=$(nproc) mem_gib=$(awk '/MemTotal/{printf "%.1f", $2/1048576}' /proc/meminfo)"
  echo "cpu_model=$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
  echo "kernel=$(uname -r) os=$(. /etc/os-release; echo "$PRETTY_NAME")"
  echo "oha=$(oha --version) nginx=$(nginx -v 2>&1 | sed 's/.*\///')"
  echo "litellm=$("$LITELLM_VENV/bin/pip" show litellm 2>/dev/null | awk '/^Version/{print $2}')"
  echo "duration=${DURATION}s repeats=$REPEATS warmup=${WARMUP}s conc=[$CONC] stream_conc=[$STREAM_CONC]"
  echo "upstream=ollama-sim chunk_delay_ms=$CHUNK_DELAY_MS up_workers=$UP_WORKERS px_workers=$PX_WORKERS litellm_workers=$LITELLM_WORKERS"
} > "$META"

cleanup() {
  set +e
  proc_stop candidate; proc_stop litellm; nginx_stop proxy-nginx; upstream_stop
}
trap cleanup EXIT
trap 'exit 130' INT TERM

OHA=(oha --no-tui --output-format json -w -m POST -H "Content-Type: application/json")

run_point() { # run_point COLUMN MODE CONC REP URL KEY BODY PID [OTHER_PID]
  local column=$1 mode=$2 c=$3 rep=$4 url=$5 key=$6 body=$7 pid=$8 other=${9:-}
  local out="$RAW/$column-$mode-c$c-r$rep.json" t0 t1 cpu
  python3 "$BENCH/cpu.py" snap "$RAW/.snap" $$ $other
  t0=$(tree_cpu_ticks "$pid")
  "${OHA[@]}" -z "${DURATION}s" -c "$c" -H "Authorization: Bearer $key" -D "$body" "$url" > "$out"
  t1=$(tree_cpu_ticks "$pid")
  cpu=$(python3 "$BENCH/cpu.py" diff "$RAW/.snap" "$DURATION" $$ $other)
  python3 - "$out" "$column" "$mode" "$c" "$rep" "$((t1 - t0))" "$(getconf CLK_TCK)" $cpu >> "$CSV" <<'PY'
import json, sys
out, column, mode, c, rep, ticks, hz, foreign, busy = sys.argv[1:]
d = json.load(open(out))
summary, latency = d["summary"], d.get("latencyPercentiles", {})
codes = d.get("statusCodeDistribution") or {}
ok = int(codes.get("200", 0))
answered = sum(int(v) for v in codes.values())
errors = sum(int(v) for v in (d.get("errorDistribution") or {}).values())
cpu_us = int(ticks) / int(hz) * 1e6 / ok if ok else float("nan")
ms = lambda seconds: (seconds or float("nan")) * 1000
print(f"{column},{mode},{c},{rep},{summary.get('requestsPerSec', 0):.1f},{ms(latency.get('p50')):.3f},"
      f"{ms(latency.get('p99')):.3f},{summary.get('successRate', 0):.4f},{answered - ok + errors},"
      f"{cpu_us:.0f},{ok},{foreign},{busy}")
PY
  tail -1 "$CSV" | awk -F, '{printf "    %-10s %-6s c=%-3s rep%s %9s req/s  p50 %8s ms  p99 %8s ms  non-200 %s  cpu/req %s us  foreign %s%%\n", $1, $2, $3, $4, $5, $6, $7, $9, $10, $12}' >&2
}

wait_quiet() { # wait_quiet [OTHER_PID]: until other work uses < QUIET_MAX % of the CPUs
  local foreign="" i
  for ((i = 0; i < QUIET_WAIT / 5; i++)); do
    foreign=$(python3 "$BENCH/cpu.py" quiet 5 $$ "$@")
    awk -v f="$foreign" -v m="$QUIET_MAX" 'BEGIN {exit !(f < m)}' && return 0
    log "other work is using ${foreign}% of the CPUs; waiting"
  done
  [ -n "$foreign" ] && log "still ${foreign}% of other work; measuring anyway"
  return 0
}

measure() { # measure COLUMN URL KEY PID [OTHER_PID]: every point of one column
  local column=$1 url=$2 key=$3 pid=$4 other=${5:-} rep c
  wait_quiet $other
  echo "rss_idle_mib[$column]=$(tree_mem_mib "$pid" VmRSS)" >> "$META"
  log "== $column ($url), pid $pid"
  # One answer of each kind, kept for inspection and checked for the expected words.
  curl -s -m 30 -X POST "$url" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    --data-binary @"$BENCH/body.json" > "$RAW/$column-sample.json" || true
  curl -s -N -m 30 -X POST "$url" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    --data-binary @"$BENCH/body-stream.json" > "$RAW/$column-sample-stream.txt" || true
  grep -q 'Rayleigh' "$RAW/$column-sample.json" || log "WARNING: $column's answer lacks the expected words"
  grep -Eq '\[DONE\]|"done":true' "$RAW/$column-sample-stream.txt" || log "WARNING: $column's stream has no end"
  "${OHA[@]}" -z "${WARMUP}s" -c 10 -H "Authorization: Bearer $key" -D "$BENCH/body.json" "$url" > /dev/null
  for ((rep = 1; rep <= REPEATS; rep++)); do
    for c in $CONC; do run_point "$column" json "$c" "$rep" "$url" "$key" "$BENCH/body.json" "$pid" $other; done
    for c in $STREAM_CONC; do run_point "$column" stream "$c" "$rep" "$url" "$key" "$BENCH/body-stream.json" "$pid" $other; done
  done
  echo "rss_peak_mib[$column]=$(tree_mem_mib "$pid" VmHWM)" >> "$META"
}

has() { [[ ",$ANCHORS," == *",$1,"* ]]; }

upstream_start
UPSTREAM_URL="http://127.0.0.1:$UP_PORT"
has direct && measure direct "$UPSTREAM_URL/api/chat" none "$(upstream_pid)"
if has nginx; then
  nginx_start proxy-nginx "$PASSTHROUGH_CONF" "$PX_PORT"
  measure nginx "http://127.0.0.1:$PX_PORT/v1/chat/completions" none "$(nginx_pid proxy-nginx)" "$(nginx_pid proxy-nginx)"
  nginx_stop proxy-nginx
fi
litellm_column() { # litellm_column COLUMN CONFIG
  local column=$1 config="$RUN/$1.yaml"
  [ "$LITELLM_WORKERS" != 1 ] && column="$column-w$LITELLM_WORKERS"
  render "$2" "$config"
  LITELLM_MASTER_KEY=$MASTER_KEY LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \
    proc_start litellm "$LITELLM_PORT" "$LITELLM_VENV/bin/litellm" --config "$config" \
      --host 127.0.0.1 --port "$LITELLM_PORT" --num_workers "$LITELLM_WORKERS" --telemetry False
  wait_ready "http://127.0.0.1:$LITELLM_PORT/v1/chat/completions" "$MASTER_KEY" "$BENCH/body.json" 120
  measure "$column" "http://127.0.0.1:$LITELLM_PORT/v1/chat/completions" "$MASTER_KEY" "$(proc_pid litellm)"
  proc_stop litellm
}
if has litellm || has litellm-mi; then
  [ -x "$LITELLM_VENV/bin/litellm" ] || { echo "LiteLLM is not in $LITELLM_VENV: run scripts/bench/setup.sh" >&2; exit 1; }
fi
has litellm && litellm_column litellm "$BENCH/litellm.yaml"
has litellm-mi && litellm_column litellm-mi "$BENCH/litellm-tuned.yaml"
if [ -n "$CAND_NAME" ]; then
  export OLLAMA_BASE_URL="$UPSTREAM_URL" BENCH_PORT="$CAND_PORT"
  [ -n "$CAND_SETUP" ] && bash -c "$CAND_SETUP"
  proc_start candidate "$CAND_PORT" bash -c "exec $CAND_CMD"
  wait_ready "http://127.0.0.1:$CAND_PORT$CAND_PATH" "$CAND_KEY" "$BENCH/body.json" 60
  measure "$CAND_NAME" "http://127.0.0.1:$CAND_PORT$CAND_PATH" "$CAND_KEY" "$(proc_pid candidate)"
  proc_stop candidate
fi
upstream_stop
echo "$CSV"
