#!/usr/bin/env bash
# 10-minute mixed soak: streams, non-streams, a rate-limited user (429s), clients that leave
# mid-stream, and admin calls, all at once; samples the proxy's RSS and open fds.
set -u
# usage: SOAK=600s scripts/soak.sh   (writes samples.txt, lt-*.json, churn.log, metrics.txt and
#        p.db in $SOAK_DIR, default a new temp folder; scripts/soak-report.py summarises them)
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p proxy-server -p aiproxy-ollama-sim -p proxy-loadtest
T=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release
SOAK_DIR=${SOAK_DIR:-$(mktemp -d)}
cd "$SOAK_DIR" && echo "soak files in $SOAK_DIR"
$T/ollama-sim --listen 127.0.0.1:26434 --token-delay-ms 2 > sim.log 2>&1 &
SIM=$!
export DATABASE_PATH=$SOAK_DIR/p.db OLLAMA_BASE_URL=http://127.0.0.1:26434 HOST=127.0.0.1 PORT=26500 ADMIN_API_KEY=soak-admin RUST_LOG=warn
$T/proxy-server users create fast --unlimited --api-key sk-soak-fast-8fJ2kLq9Zx4Wm7Rt1Yb6Nc3Vd5 > /dev/null
$T/proxy-server users create slow --api-key sk-soak-slow-8fJ2kLq9Zx4Wm7Rt1Yb6Nc3Vd5 > /dev/null
$T/proxy-server users set-limits slow --requests-per-minute 30 > /dev/null
$T/proxy-server > proxy.log 2>&1 &
PROXY=$!
sleep 1
D=${SOAK:-600s}
$T/proxy-loadtest --url http://127.0.0.1:26500 --key sk-soak-fast-8fJ2kLq9Zx4Wm7Rt1Yb6Nc3Vd5 --stream --duration $D --concurrency 8 --json > lt-stream.json 2>/dev/null &
$T/proxy-loadtest --url http://127.0.0.1:26500 --key sk-soak-fast-8fJ2kLq9Zx4Wm7Rt1Yb6Nc3Vd5 --duration $D --concurrency 8 --json > lt-json.json 2>/dev/null &
$T/proxy-loadtest --url http://127.0.0.1:26500 --key sk-soak-slow-8fJ2kLq9Zx4Wm7Rt1Yb6Nc3Vd5 --duration $D --concurrency 2 --json > lt-429.json 2>/dev/null &
python3 - "$D" > churn.log 2>&1 <<'PY' &
import http.client, json, sys, time
secs = int(sys.argv[1].rstrip("s"))
end = time.time() + secs
left = admin = 0
while time.time() < end:
    c = http.client.HTTPConnection("127.0.0.1", 26500)
    c.request("POST", "/v1/chat/completions", json.dumps({"model": "llama3.2", "stream": True,
              "messages": [{"role": "user", "content": " ".join(["w"] * 200)}]}),
              {"Authorization": "Bearer sk-soak-fast-8fJ2kLq9Zx4Wm7Rt1Yb6Nc3Vd5", "Content-Type": "application/json"})
    r = c.getresponse(); r.read(300); c.close(); left += 1
    a = http.client.HTTPConnection("127.0.0.1", 26500)
    a.request("GET", "/admin/users?limit=10", headers={"Authorization": "Bearer soak-admin"})
    assert a.getresponse().status == 200; a.close(); admin += 1
    time.sleep(0.05)
print(json.dumps({"left_mid_stream": left, "admin_calls": admin}))
PY
echo "t_s rss_kib fds" > samples.txt
START=$(date +%s)
while kill -0 $PROXY 2>/dev/null && [ $(( $(date +%s) - START )) -lt $(( ${D%s} + 5 )) ]; do
  echo "$(( $(date +%s) - START )) $(awk '/VmRSS/{print $2}' /proc/$PROXY/status) $(ls /proc/$PROXY/fd | wc -l)" >> samples.txt
  sleep 30
done
wait %4 %5 %6 %7 2>/dev/null
sleep 2
echo "final $(awk '/VmRSS/{print $2}' /proc/$PROXY/status) $(ls /proc/$PROXY/fd | wc -l)" >> samples.txt
python3 -c 'import urllib.request as u; r=u.Request("http://127.0.0.1:26500/metrics", headers={"Authorization": "Bearer soak-admin"}); print(u.urlopen(r).read().decode())' > metrics.txt
kill -TERM $PROXY; wait $PROXY; echo "proxy exit $?" >> samples.txt
kill $SIM
