"""Healthy-node staleness with and without hung BMCs, and client CPU per poll,
for farm-worker with both executors, in one run.

    python -m bench.fleet [--count 200] [--seconds 40] [--interval 5] [--repeats 1]

Starts its own redis-server and farm-sim per scenario; prints a Markdown table.
Scenarios alternate (threads/processes, 0 %/10 % hung) within each repeat.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from bench.common import BIN, Fleet, PrivateRedis, children_cpu, worker_conf


def scenario(executor, hung_fraction, count, seconds, interval, pool, work):
    fleet = Fleet(count, hung_fraction, work)
    redis = PrivateRedis(work)
    try:
        store = redis.store
        store.import_nodes(fleet.nodes)
        healthy = [n.name for n in fleet.nodes if n.name not in fleet.hung]
        base = fleet.base
        conf = worker_conf(os.path.join(work, f"farm-{base}.conf"), redis.url, executor, interval, 2, pool)
        log_path = os.path.join(work, f"worker-{base}.log")
        cpu0 = children_cpu()
        started = time.time()
        worker = subprocess.Popen([os.path.join(BIN, "farm-worker"), "--config-file", conf],
                                  stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
        first_all, staleness, gaps, last = None, [], [], {}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now = time.time()
            states = store.node_states(healthy)
            polled = {n: float(s["polled_at"]) for n, s in states.items() if s.get("polled_at")}
            if first_all is None and len(polled) == len(healthy):
                first_all = now - started
            if first_all is not None:
                staleness += [now - t for t in polled.values()]
            for n, t in polled.items():
                if n in last and t != last[n]:
                    gaps.append(t - last[n])
                last[n] = t
            time.sleep(0.25)
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        cpu = children_cpu() - cpu0
        with open(log_path) as f:
            m = re.search(r"wrote (\d+) poll results", f.read())
        polls = int(m.group(1)) if m else 0
        staleness.sort()
        return {"executor": executor, "hung": len(fleet.hung), "nodes": count,
                "all_healthy_polled_s": round(first_all, 2) if first_all else None,
                "stale_mean_s": round(statistics.mean(staleness), 2),
                "stale_p99_s": round(staleness[int(len(staleness) * 0.99)], 2),
                "gap_max_s": round(max(gaps), 2) if gaps else None,
                "polls": polls, "worker_cpu_s": round(cpu, 2),
                "cpu_ms_per_poll": round(cpu / polls * 1000, 3) if polls else None}
    finally:
        fleet.stop()
        redis.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--interval", type=float, default=5)
    ap.add_argument("--pool", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=1)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-bench-")
    rows = []
    for _ in range(a.repeats):
        for executor in ("threads", "processes"):
            for hung in (0.0, 0.1):
                row = scenario(executor, hung, a.count, a.seconds, a.interval, a.pool, work)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
