"""Scale out: 1, 2 and 4 farm-worker processes on one fleet.

    python -m bench scaleout [--count 2000] [--interval 2] [--seconds 20] [--repeats 3] [--write-docs]

Each repeat runs every worker count once, alternating, each on a fresh
Redis with one coordinator. After the assignment covers every worker and two
intervals have passed, it measures for --seconds: polls per second (the
workers' farm_polls_total), healthy nodes' staleness sampled every 0.5 s, and
the CPU of the workers and of the simulator. The demand is count / interval
polls per second; on this 2-core machine the simulator shares the cores.
"""

import argparse
import json
import os
import sys
import tempfile
import time

from bench import common, report
from bench.common import Fleet, PrivateRedis, farm_conf, median, percentile, proc_cpu, wait_for
from bench.sampling import Sampler


def run(n_workers, fleet, a, work):
    redis = PrivateRedis(work)
    procs = []
    try:
        store = redis.store
        store.import_nodes(fleet.nodes)
        conf = farm_conf(os.path.join(work, f"scaleout-{redis.port}.conf"), redis.url, "threads", a.interval,
                         2.0, a.pool, membership_timeout=5, leader_timeout=4, partitions=256)
        started = time.time()
        procs = [common.start("coordinator", conf, work)]
        workers = [common.start("worker", conf, work) for _ in range(n_workers)]
        procs += workers
        urls = [common.metrics_url(w) for w in workers]
        wait_for(lambda: (lambda x: x and len(x["members"]) == n_workers)(store.assignment()), 60,
                 what="an assignment over every worker")
        time.sleep(2 * a.interval + 1)
        since = time.time() - started
        with Sampler(store, fleet.healthy_names, started, 0.5, window=(since, since + a.seconds)) as sampler:
            cpu0 = sum(proc_cpu(w.pid) for w in workers)
            polls0, sim0 = sum(common.polls_total(u) for u in urls), fleet.cpu()
            time.sleep(a.seconds)
            cpu = sum(proc_cpu(w.pid) for w in workers) - cpu0
            polls, sim = sum(common.polls_total(u) for u in urls) - polls0, fleet.cpu() - sim0
        pooled = sorted(sampler.pooled)
        return {"workers": n_workers, "polls_per_s": polls / a.seconds,
                "stale_p50_s": percentile(pooled, 0.5), "stale_p99_s": percentile(pooled, 0.99),
                "stale_max_s": pooled[-1] if pooled else None,
                "workers_cpu_core_pct": 100 * cpu / a.seconds, "sim_cpu_core_pct": 100 * sim / a.seconds}
    finally:
        common.stop(procs)
        redis.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--pool", type=int, default=64)
    ap.add_argument("--shards", type=int, default=2, help="simulator processes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-scaleout-")
    fleet = Fleet(a.count, 0.0, work, shards=a.shards)
    rows = []
    try:
        for _ in range(a.repeats):
            for n in (1, 2, 4):
                rows.append(run(n, fleet, a, work))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    finally:
        fleet.stop()
    cols = [("polls_per_s", "polls/s", 0), ("stale_p50_s", "staleness p50 (s)", 2),
            ("stale_p99_s", "p99 (s)", 2), ("stale_max_s", "max (s)", 2),
            ("workers_cpu_core_pct", "workers' CPU (% of a core)", 0),
            ("sim_cpu_core_pct", "simulator CPU (% of a core)", 0)]
    cells = []
    for n in (1, 2, 4):
        group = [r for r in rows if r["workers"] == n]
        cells.append([n] + [round(median([r[c] for r in group]), d) for c, _, d in cols])
    tables = report.table(["workers"] + [c[1] for c in cols], cells)
    tables += (f"\n\n{a.count} simulated BMCs ({a.shards} simulator processes), "
               f"poll_interval {a.interval:g} s: a demand of {a.count / a.interval:g} polls/s. "
               f"One coordinator, 256 partitions, pool {a.pool} per worker; medians of {a.repeats} repeats.")
    print(tables)
    if a.write_docs:
        report.section("scaleout", tables)


if __name__ == "__main__":
    main()
