"""Summarises a scripts/soak.sh run: usage: scripts/soak-report.py SOAK_DIR"""
import json, sqlite3, sys
r = {n: json.load(open(f"{sys.argv[1]}/lt-{n}.json")) for n in ("stream", "json", "429")}
churn = json.loads(open(sys.argv[1] + "/churn.log").read().strip().splitlines()[-1])
db = sqlite3.connect(sys.argv[1] + "/p.db")
rows = dict(((u, s), n) for u, s, n in db.execute("select user_id, status, count(*) from usage group by 1, 2"))
for n, d in r.items():
    print(n, "requests", d["requests"], "ok", d["successes"], "errors", d["errors"], "rps %.0f" % d["requests_per_sec"])
print("churn", churn)
print("rows", rows)
fast_ok = r["stream"]["successes"] + r["json"]["successes"]
fast_rows = sum(n for (u, s), n in rows.items() if u == "fast")
print("fast: answers", fast_ok, "+ left mid-stream", churn["left_mid_stream"], "=", fast_ok + churn["left_mid_stream"], "rows", fast_rows)
print("slow: answers", r["429"]["successes"], "rows", sum(n for (u, s), n in rows.items() if u == "slow"))
samples = open(sys.argv[1] + "/samples.txt").read()
print(samples)
