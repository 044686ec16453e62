#!/usr/bin/env python3
"""Time to first token, straight to the simulator and through the proxy, in one run.

Usage: scripts/ttft.py SIM_URL PROXY_URL USER_KEY [N]
Alternates direct and proxied streaming requests (N each, keep-alive connections) and
prints p50/p90/p99 of the time from sending the request to receiving the first token.
"""
import http.client
import json
import statistics
import sys
import time
from urllib.parse import urlparse


def first_token_seconds(conn, path, body, headers, is_sse):
    start = time.perf_counter()
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    first = None
    while True:
        line = response.readline()
        if not line:
            break
        if first is None:
            text = line.strip()
            if is_sse and text.startswith(b"data: {") and b'"content":"' in text and b'"content":""' not in text:
                first = time.perf_counter() - start
            elif not is_sse and text.startswith(b"{") and b'"content":"' in text and b'"content":""' not in text:
                first = time.perf_counter() - start
    return first


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main():
    sim, proxy, key = sys.argv[1], sys.argv[2], sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    messages = [{"role": "user", "content": "Why is the sky blue? Answer in one sentence."}]
    direct_body = json.dumps({"model": "llama3.2", "messages": messages, "stream": True})
    proxy_body = json.dumps({"model": "llama3.2", "messages": messages, "stream": True})
    s, p = urlparse(sim), urlparse(proxy)
    direct_conn = http.client.HTTPConnection(s.hostname, s.port)
    proxy_conn = http.client.HTTPConnection(p.hostname, p.port)
    json_headers = {"Content-Type": "application/json"}
    auth_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    direct, proxied = [], []
    for i in range(n + 20):
        d = first_token_seconds(direct_conn, "/api/chat", direct_body, json_headers, False)
        q = first_token_seconds(proxy_conn, "/v1/chat/completions", proxy_body, auth_headers, True)
        if i >= 20:  # warm-up
            direct.append(d * 1000)
            proxied.append(q * 1000)
    for name, values in (("direct", direct), ("proxy", proxied)):
        print(f"{name:7} n={len(values)} p50={percentile(values, .5):.3f} ms p90={percentile(values, .9):.3f} ms "
              f"p99={percentile(values, .99):.3f} ms mean={statistics.mean(values):.3f} ms")
    added = [b - a for a, b in zip(direct, proxied)]
    print(f"added   p50={percentile(added, .5):.3f} ms p90={percentile(added, .9):.3f} ms")


main()
