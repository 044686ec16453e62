#!/usr/bin/env python3
"""How much CPU other work on the machine used while a point was measured.

  cpu.py snap FILE                   save the machine's busy ticks and those of our processes
  cpu.py diff FILE SECONDS ROOT...   print "foreign_pct busy_pct": the machine's busy time
                                     less that of the process trees under ROOT... (with
                                     their reaped children), and the machine's busy time,
                                     both as % of all cores over the window
  cpu.py quiet SECONDS ROOT...       sample for SECONDS and print foreign_pct

The roots are ours: the benchmark script (its tree holds what it started, and the load
generator's time once it has been reaped) and the daemons it started (nginx masters).
"""
import json
import os
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1


def machine_busy():
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # less idle and iowait


def processes():
    """pid -> (ppid, utime + stime + cutime + cstime)."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = open(f"/proc/{name}/stat").read()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2:].split()
        table[int(name)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    return table


def ours(table, roots):
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen, stack = set(), [r for r in roots if r in table]
    while stack:
        pid = stack.pop()
        if pid not in seen:
            seen.add(pid)
            stack.extend(children.get(pid, []))
    return sum(table[p][1] for p in seen)


def snap(roots):
    return {"t": time.time(), "busy": machine_busy(), "ours": ours(processes(), roots)}


def diff(before, roots):
    elapsed = time.time() - before["t"]
    busy = machine_busy() - before["busy"]
    mine = ours(processes(), roots) - before["ours"]
    capacity = max(elapsed * HZ * CPUS, 1)
    return 100.0 * max(busy - mine, 0) / capacity, 100.0 * busy / capacity


def roots(args):
    return [int(a) for a in args if a.isdigit()]


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "snap":
        json.dump(snap(roots(sys.argv[3:])), open(sys.argv[2], "w"))
    elif command == "diff":
        foreign, busy = diff(json.load(open(sys.argv[2])), roots(sys.argv[4:]))
        print(f"{foreign:.1f} {busy:.1f}")
    elif command == "quiet":
        start = snap(roots(sys.argv[3:]))
        time.sleep(float(sys.argv[2]))
        print(f"{diff(start, roots(sys.argv[3:]))[0]:.1f}")
