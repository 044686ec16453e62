#!/usr/bin/env python3
"""The instruction-count gate: what one request costs the proxy on each main path, counted by
callgrind against the simulator and compared with the budget in perf/instructions.toml.

    scripts/instruction-gate.py            # measure every path; exit 1 if one is out of bounds
    scripts/instruction-gate.py --update   # measure, then rewrite the budget with the figures
    scripts/instruction-gate.py --runs 5   # five whole runs in fresh processes: min, max, spread

The release proxy-server runs under `valgrind --tool=callgrind --instr-atstart=no`, the
simulator beside it as a plain process, and this script is the client: only the proxy's
instructions are counted. Per path, on one keep-alive connection: warm-up requests, counters
zeroed (vgdb `zero`), N requests one at a time, a dump (vgdb `dump`). Each request is sent
once every thread of the proxy is asleep, and the next waits until the usage writer has
committed this one's row, so the same work happens in the same order on every run. A path's
figure is the dump's instructions on every thread but the writer's ingest thread, divided by
N; the ingest thread's instructions over all paths, divided by the rows, are the
`usage_ingest_row` line (one row per transaction: its cost when requests come one at a time).
Why each step, and the spread left: docs/performance.md, "Instruction-count gate".

A line more than 3 % above its budget fails, and so does one more than 3 % below it: a budget
nobody lowers lets the next regression through unseen. Either way one command rewrites the
budget (--update); commit it with the change and say why.
Exit status: 0 within budget, 1 out of bounds, 2 could not measure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Case:
    """One path: a request sent N times, and what every answer to it must contain (with status
    200), so that a path that breaks cannot pass as a cheap one."""

    name: str
    method: str
    route: str
    body: dict
    expect: bytes
    headers: dict = field(default_factory=dict)


MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Why is the sky blue? Answer in one sentence."},
]

# The paths, one line each (then --update writes its budget line). The simulator echoes the
# last user message, so every chat answer is the same ten words, ten chunks when streamed.
PATHS = [
    Case("chat", "POST", "/v1/chat/completions", {"model": "llama3.2", "messages": MESSAGES, "stream": False}, b'"content":"Echo: Why is the sky blue? Answer in one sentence."'),
    Case("chat_stream", "POST", "/v1/chat/completions", {"model": "llama3.2", "messages": MESSAGES, "stream": True}, b"data: [DONE]"),
    Case("embeddings", "POST", "/v1/embeddings", {"model": "nomic-embed-text", "input": "Why is the sky blue?"}, b'"embedding":['),
]

# The budget line for the usage writer's ingest thread, per row.
INGEST_LINE = "usage_ingest_row"
# That thread, told apart by the function only it runs.
INGEST_MARK = "aiproxy_storage::writer::write_batch"
REQUEST_MARK = "actix_http::h1::dispatcher"

ROOT = Path(__file__).resolve().parent.parent
BUDGET = ROOT / "perf" / "instructions.toml"
DUMPS = ROOT / "target" / "instruction-gate"
TOLERANCE = 0.03

ADMIN_KEY = "instruction-gate-admin-key-0123456789abcdef"
USER_KEY = "instruction-gate-user-key-0123456789abcdef"
# Every limit on, far above what the gate reaches, so the limiter does its per-request work.
LIMITS = ["--requests-per-minute", "1000000000", "--requests-per-day", "100000000000",
          "--tokens-per-minute", "100000000000", "--tokens-per-day", "1000000000000",
          "--total-token-limit", "1000000000000", "--max-concurrent-requests", "100000"]


class GateError(Exception):
    """The gate could not measure (as opposed to: a line is out of bounds)."""


@dataclass
class Cost:
    """Instructions counted in one window: serving the requests, and moving their usage rows
    from the journal into SQLite."""

    request: int
    ingest: int


def log(message: str) -> None:
    print(f"[instruction-gate {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr,
          flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def release_binaries(bin_dir: str | None) -> Path:
    if bin_dir is None:
        log("cargo build --release -p proxy-server -p aiproxy-ollama-sim")
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "proxy-server",
                        "-p", "aiproxy-ollama-sim"], cwd=ROOT, check=True)
        meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                              cwd=ROOT, check=True, capture_output=True, text=True)
        release = Path(json.loads(meta.stdout)["target_directory"]) / "release"
    else:
        release = Path(bin_dir).resolve()
    for name in ("proxy-server", "ollama-sim"):
        if not (release / name).is_file():
            raise GateError(f"{release / name} is missing")
    return release


def wait_until(what: str, condition, timeout: float, process: subprocess.Popen | None = None,
               poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (OSError, http.client.HTTPException, sqlite3.Error):
            pass
        if process is not None and process.poll() is not None:
            raise GateError(f"{what}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise GateError(f"{what}: not within {timeout:.0f} s")
        time.sleep(poll)


def http_ok(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    finally:
        conn.close()


class Stack:
    """The simulator, and proxy-server under callgrind on a fresh database."""

    def __init__(self, release: Path, work: Path):
        self.release, self.work = release, work
        self.sim_port, self.port = free_port(), free_port()
        self.db = work / "proxy.db"
        # The defaults of everything not named here, whatever the caller's environment says.
        self.env = {k: v for k, v in os.environ.items()
                    if k in ("PATH", "HOME", "TMPDIR", "USER", "LOGNAME", "VALGRIND_LIB")}
        self.env.update({
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "OLLAMA_BASE_URL": f"http://127.0.0.1:{self.sim_port}",
            "ADMIN_API_KEY": ADMIN_KEY,
            "DATABASE_PATH": str(self.db),
            # One connection needs one worker; idle ones would add timer ticks that depend on
            # wall time, not on requests.
            "WORKERS": "1",
            # Following changes other processes make to the database is a timer too (a
            # database read every 250 ms), paid by the clock rather than by requests.
            "CHANGE_POLL_MILLIS": "0",
        })
        self.sim: subprocess.Popen | None = None
        self.proxy: subprocess.Popen | None = None
        self.dumps = 0
        self.sent = 0
        self.window = 0.0

    def start(self) -> None:
        with open(self.work / "sim.log", "wb") as sim_log:
            self.sim = subprocess.Popen(
                [str(self.release / "ollama-sim"), "--listen", f"127.0.0.1:{self.sim_port}",
                 "--workers", "1"], stdout=sim_log, stderr=subprocess.STDOUT, cwd=self.work)
        for command in (["create", "gate", "--api-key", USER_KEY],
                        ["set-limits", "gate", *LIMITS]):
            subprocess.run([str(self.release / "proxy-server"), "users", *command],
                           env=self.env, cwd=self.work, check=True, stdout=subprocess.DEVNULL)
        with open(self.work / "proxy.log", "wb") as proxy_log:
            self.proxy = subprocess.Popen(
                ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
                 "--dump-line=no", f"--callgrind-out-file={DUMPS}/callgrind.out",
                 f"--log-file={self.work}/valgrind.log", str(self.release / "proxy-server")],
                env=self.env, stdout=proxy_log, stderr=subprocess.STDOUT, cwd=self.work)
        wait_until("the simulator answers", lambda: http_ok(self.sim_port, "/"), 30, self.sim)
        wait_until("proxy-server under valgrind answers",
                   lambda: http_ok(self.port, "/health"), 180, self.proxy)
        self.control("instrumentation", "on")

    def control(self, *command: str) -> None:
        """A callgrind monitor command (`zero`, `dump NAME`, `instrumentation on`) through
        vgdb. vgdb finds the process by a file named after $USER and $HOST (which is also the
        proxy's listen address), so it gets valgrind's environment."""
        result = subprocess.run(["vgdb", f"--pid={self.proxy.pid}", *command], env=self.env,
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise GateError(f"vgdb {' '.join(command)} failed (it must reach the valgrind "
                            f"process): {result.stdout.strip()} {result.stderr.strip()}")

    def wait_idle(self) -> None:
        """Until no thread of the proxy runs or waits on the disk, twice in a row: each
        request then finds the proxy asleep instead of racing it through the last one."""
        tasks = Path(f"/proc/{self.proxy.pid}/task")
        quiet = 0
        deadline = time.monotonic() + 30
        while quiet < 2:
            busy = False
            for task in tasks.iterdir():
                try:
                    stat = (task / "stat").read_text()
                except OSError:
                    continue  # a thread that just ended
                if stat[stat.rindex(")") + 2] in "RD":
                    busy = True
                    break
            quiet = 0 if busy else quiet + 1
            if time.monotonic() > deadline:
                raise GateError("proxy-server did not go idle within 30 s")
            time.sleep(0.0002)

    def wal_written(self) -> int:
        """When SQLite's write-ahead log was last written: it moves with each commit of the
        usage writer, and watching it takes no lock a commit or checkpoint could meet."""
        try:
            return (self.work / "proxy.db-wal").stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def count_rows(self) -> int:
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute("SELECT count(*) FROM usage").fetchone()[0]
        finally:
            db.close()

    def measure(self, case: Case, warmup: int, requests: int) -> Cost:
        """What `requests` requests of `case` cost the proxy."""
        body = json.dumps(case.body).encode()
        headers = {"Host": f"127.0.0.1:{self.port}", "Authorization": f"Bearer {USER_KEY}",
                   "Content-Type": "application/json", "Content-Length": str(len(body)),
                   **case.headers}
        # Head and body in one write (http.client writes them apart, and whether the proxy
        # then reads them in one go or two depends on timing).
        request = (f"{case.method} {case.route} HTTP/1.1\r\n"
                   + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                   + "\r\n").encode() + body
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=60)

        def send() -> None:
            self.wait_idle()
            written = self.wal_written()
            conn.sendall(request)
            answer = http.client.HTTPResponse(conn, method=case.method)
            answer.begin()
            data = answer.read()
            self.sent += 1
            if answer.status != 200 or case.expect not in data or answer.will_close:
                raise GateError(f"{case.name}: {case.method} {case.route} answered "
                                f"{answer.status}{' and closed' if answer.will_close else ''}"
                                f" (expected 200 with {case.expect!r}): {data[:300]!r}")
            # Left to the writer's timer, rows would be batched by wall time, and each
            # record would be freed by the ingest thread at a moment that varies from run to
            # run: one row per transaction, committed between requests.
            polls = 0

            def committed() -> bool:
                nonlocal polls
                polls += 1
                if self.wal_written() != written:
                    return True
                # A file's mtime has the kernel's coarse clock: should two commits ever share
                # a tick, the row count still tells (a read, so only now and then).
                return polls % 200 == 0 and self.count_rows() == self.sent

            wait_until("the usage writer's commit", committed, 30, self.proxy, poll=0.001)

        try:
            for _ in range(warmup):
                send()
            self.control("zero")
            started = time.monotonic()
            for _ in range(requests):
                send()
            self.wait_idle()
            self.control("dump", case.name)
            self.window = time.monotonic() - started
        finally:
            conn.close()
        self.dumps += 1
        return self.read_dump(case.name)

    def read_dump(self, name: str) -> Cost:
        # --separate-threads=yes: a file per thread, `callgrind.out.<dump>-<thread>`.
        pattern = f"callgrind.out.{self.dumps}-*"
        wait_until(f"callgrind's dump {pattern}", lambda: any(DUMPS.glob(pattern)), 30)
        cost = Cost(0, 0)
        for part in sorted(DUMPS.glob(pattern)):
            text = part.read_text(errors="replace")
            found = re.search(r"^(?:totals|summary):\s+(\d+)", text, re.MULTILINE)
            if not found:
                raise GateError(f"no totals line in {part}")
            if INGEST_MARK not in text:
                cost.request += int(found.group(1))
            elif REQUEST_MARK in text:
                raise GateError(f"{part}: one thread both serves requests and ingests usage")
            else:
                cost.ingest += int(found.group(1))
            part.replace(DUMPS / f"{name}.callgrind.out-{part.name.rsplit('-', 1)[1]}")
        if cost.ingest == 0:
            # Every request's row was committed inside the window.
            raise GateError(f"no thread ran {INGEST_MARK}: renamed? Update INGEST_MARK")
        return cost

    def stop(self) -> None:
        for process in (self.proxy, self.sim):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (self.proxy, self.sim):
            if process is not None:
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def one_run(release: Path, cases: list[Case], warmup: int, requests: int,
            keep: bool) -> dict[str, float]:
    """Instructions per request of every path, and per row of the ingest thread."""
    work = Path(tempfile.mkdtemp(prefix="instruction-gate-"))
    stack = Stack(release, work)
    try:
        stack.start()
        figures = {}
        ingest = 0
        for case in cases:
            cost = stack.measure(case, warmup, requests)
            figures[case.name] = cost.request / requests
            ingest += cost.ingest
            log(f"{case.name}: {cost.request:,} instructions / {requests} requests = "
                f"{cost.request / requests:,.0f} (usage ingest {cost.ingest / requests:,.0f} "
                f"per row), {stack.window:.1f} s")
        figures[INGEST_LINE] = ingest / (requests * len(cases))
        # Outside every window: one usage row per answered request, or the figures are off.
        rows = stack.count_rows()
        if rows != stack.sent:
            raise GateError(f"{stack.sent} requests answered but {rows} usage rows stored")
        return figures
    except BaseException:
        for name in ("proxy.log", "valgrind.log", "sim.log"):
            if (work / name).is_file():
                lines = (work / name).read_text(errors="replace").splitlines()[-30:]
                print(f"--- {name}, last lines\n" + "\n".join(lines), file=sys.stderr)
        raise
    finally:
        stack.stop()
        if keep:
            log(f"logs and database kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


HEADER = """\
# Instructions proxy-server spends on one request, per path, counted by callgrind against
# the simulator; usage_ingest_row is the usage writer's share of one row, committed alone.
# Measured by scripts/instruction-gate.py (in CI); method in docs/performance.md
# ("Instruction-count gate"). A line more than 3 % above or below its figure fails.
# A change that makes a path cheaper lowers its figure in the same commit; one that makes it
# dearer on purpose raises it and says why. Either way, one command rewrites this file:
#   scripts/instruction-gate.py --update
"""


def read_budget() -> dict[str, int]:
    budget: dict[str, int] = {}
    if not BUDGET.is_file():
        return budget
    for number, line in enumerate(BUDGET.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        found = re.fullmatch(r"([A-Za-z0-9_]+)\s*=\s*(\d+)", line)
        if not found:
            raise GateError(f"{BUDGET}:{number}: expected `name = instructions`, got {line!r}")
        budget[found.group(1)] = int(found.group(2))
    return budget


def write_budget(figures: dict[str, float]) -> None:
    BUDGET.parent.mkdir(exist_ok=True)
    lines = [f"{name} = {round(figure)}" for name, figure in figures.items()]
    BUDGET.write_text(HEADER + "\n".join(lines) + "\n")


def check(figures: dict[str, float], budget: dict[str, int]) -> list[str]:
    budget_file = BUDGET.relative_to(ROOT)
    failures = []
    print(f"\n{'line':<18}{'budget':>10}{'measured':>10}{'ratio':>8}")
    for name, figure in figures.items():
        allowed = budget.get(name)
        if allowed is None:
            print(f"{name:<18}{'-':>10}{figure:>10,.0f}{'-':>8}")
            failures.append(f"{name}: no budget in {budget_file}; add it with "
                            "scripts/instruction-gate.py --update")
            continue
        ratio = figure / allowed
        print(f"{name:<18}{allowed:>10,}{figure:>10,.0f}{ratio:>8.3f}")
        said = (f"{name}: {figure:,.0f} instructions against a budget of {allowed:,} "
                f"(ratio {ratio:.3f}, {100 * (ratio - 1):+.1f} %)")
        if ratio > 1 + TOLERANCE:
            failures.append(
                f"{said}: more than {100 * TOLERANCE:.0f} % over. See what grew with "
                f"callgrind_annotate on {DUMPS.relative_to(ROOT)}/*.callgrind.out-* (one file "
                "per thread and path); if the cost is worth it, raise the budget with "
                "scripts/instruction-gate.py --update and say why in the commit.")
        elif ratio < 1 - TOLERANCE:
            failures.append(
                f"{said}: more than {100 * TOLERANCE:.0f} % under. Lower the budget in this "
                "change: scripts/instruction-gate.py --update")
    for name in budget.keys() - figures.keys():
        failures.append(f"{name}: in {budget_file} but measured by nothing; remove the line "
                        "(--update does)")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--update", action="store_true",
                        help=f"rewrite {BUDGET.relative_to(ROOT)} with the measured figures")
    parser.add_argument("--runs", type=int, default=1,
                        help="whole runs, each in fresh processes; the median is compared [1]")
    parser.add_argument("--requests", type=int, default=200,
                        help="measured requests per path [200]")
    parser.add_argument("--warmup", type=int, default=20,
                        help="requests per path before the count starts [20]")
    parser.add_argument("--only", action="append", metavar="PATH",
                        help="measure this path only (repeatable); nothing is compared")
    parser.add_argument("--bin-dir", metavar="DIR",
                        help="take proxy-server and ollama-sim from DIR instead of building "
                        "them with cargo (to measure another build)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch folder (logs, database)")
    args = parser.parse_args()

    cases = [c for c in PATHS if not args.only or c.name in args.only]
    if args.only and len(cases) != len(set(args.only)):
        print(f"unknown path in --only; the paths: {', '.join(c.name for c in PATHS)}",
              file=sys.stderr)
        return 2
    if args.only and args.update:
        print("--update measures every path; drop --only", file=sys.stderr)
        return 2
    if args.runs < 1 or args.requests < 1 or args.warmup < 1:
        print("--runs, --requests and --warmup must be at least 1", file=sys.stderr)
        return 2
    for tool in ("valgrind", "vgdb"):
        if shutil.which(tool) is None:
            print(f"instruction-gate: {tool} is not installed (Debian package valgrind)",
                  file=sys.stderr)
            return 2
    try:
        budget = read_budget()
        release = release_binaries(args.bin_dir)
        runs = []
        for run in range(args.runs):
            if args.runs > 1:
                log(f"run {run + 1} of {args.runs}")
            shutil.rmtree(DUMPS, ignore_errors=True)
            DUMPS.mkdir(parents=True)
            runs.append(one_run(release, cases, args.warmup, args.requests, args.keep))
    except (GateError, subprocess.CalledProcessError) as err:
        print(f"instruction-gate: could not measure: {err}", file=sys.stderr)
        return 2

    figures = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    if args.runs > 1:
        print(f"\n{'line':<18}{'min':>10}{'max':>10}{'spread':>8}   "
              f"({args.runs} runs of {args.requests} requests per path)")
        for name in figures:
            low, high = min(run[name] for run in runs), max(run[name] for run in runs)
            print(f"{name:<18}{low:>10,.0f}{high:>10,.0f}{100 * (high / low - 1):>7.2f}%")
    if args.update:
        write_budget(figures)
        print(f"\nwrote {BUDGET.relative_to(ROOT)}:\n{BUDGET.read_text()}")
        return 0
    if args.only:
        for name, figure in figures.items():
            print(f"{name:<18}{figure:>10,.0f}")
        return 0
    failures = check(figures, budget)
    if failures:
        print("\ninstruction-gate: FAILED", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    print(f"\ninstruction-gate: every line within {100 * TOLERANCE:.0f} % of its budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
