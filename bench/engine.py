"""The poll engine's cost at a short and a long interval, and the processes
executor with 1 and 2 children, in one run.

    python -m bench engine [--count 1000] [--long 60] [--long-count 20000] [--intervals 2]
                           [--write-docs]

1. Kept sessions: one farm-worker (threads) polls COUNT BMCs every 1 s;
   client CPU per poll over a steady window.
2. Long interval: the same fleet every LONG seconds (farm-sim forgets
   sessions idle 60 s, as IPMI's default); after the first interval, logins
   and keepalives per poll and CPU per poll over INTERVALS intervals. Then
   the same with LONG_COUNT BMCs, where the worker's fixed cost per second
   (ticks, heartbeats, metrics) is spread over more polls.
3. Processes: a fleet that saturates one child (every node every 0.25 s);
   polls per second with `processes` = 1 and 2.
Reads farm's own counters from the worker's metrics endpoint.
"""

import argparse
import json
import sys
import tempfile

from bench import common, report
from bench.common import Fleet, polls


def measure(fleet, work, interval, warmup, window, **worker):
    executor = worker.pop("executor", "threads")
    extra = "[worker]\n" + "".join(f"{k} = {v}\n" for k, v in worker.items())
    cpu, m0, m1 = common.worker_window(fleet, work, interval, warmup, window, executor=executor,
                                       timeout=2.0, extra=extra)
    n = polls(m1) - polls(m0)

    def delta(key):
        return m1.get(key, 0) - m0.get(key, 0)
    return {"polls": n, "polls_per_s": round(n / window, 1), "cpu_s": round(cpu, 2),
            "cpu_ms_per_poll": round(1000 * cpu / n, 3) if n else None,
            "logins_per_poll": round(delta("farm_bmc_logins_total") / n, 4) if n else None,
            "keepalives_per_poll": round(delta("farm_bmc_keepalives_total") / n, 3) if n else None,
            "failed": n - (m1.get('farm_polls_total{driver="ipmi",result="ok"}', 0)
                           - m0.get('farm_polls_total{driver="ipmi",result="ok"}', 0))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--long", type=float, default=60.0)
    ap.add_argument("--intervals", type=int, default=2)
    ap.add_argument("--long-count", type=int, default=20000,
                    help="a second long-interval fleet, where the fixed cost per second is amortised")
    ap.add_argument("--saturate-count", type=int, default=2000)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-engine-")
    rows = {}
    fleet = Fleet(a.count, 0.0, work, shards=a.shards)
    try:
        rows["1 s"] = measure(fleet, work, 1.0, 5, 20)
        rows[f"{a.long:g} s"] = measure(fleet, work, a.long, a.long + 5, a.long * a.intervals)
    finally:
        fleet.stop()
    fleet = Fleet(a.long_count, 0.0, work, shards=max(a.shards, a.long_count // 10000))
    try:
        rows[f"{a.long:g} s, {a.long_count:,} BMCs"] = measure(fleet, work, a.long, a.long + 5,
                                                               a.long * a.intervals)
    finally:
        fleet.stop()
    fleet = Fleet(a.saturate_count, 0.0, work, shards=a.shards)
    try:
        for n in (1, 2):
            rows[f"processes = {n}"] = measure(fleet, work, 0.25, 5, 15, executor="processes",
                                               processes=n)
    finally:
        fleet.stop()
    for name, row in rows.items():
        print(json.dumps({"scenario": name, **row}), file=sys.stderr)
    header = ["scenario", "polls/s", "client CPU ms per poll", "logins per poll",
              "keepalives per poll", "failed polls"]
    table = report.table(header, [[k, r["polls_per_s"], r["cpu_ms_per_poll"], r["logins_per_poll"],
                                   r["keepalives_per_poll"], r["failed"]] for k, r in rows.items()])
    short, long_ = rows["1 s"], rows[f"{a.long:g} s"]
    big = rows[f"{a.long:g} s, {a.long_count:,} BMCs"]
    p1, p2 = rows["processes = 1"]["polls_per_s"], rows["processes = 2"]["polls_per_s"]
    ratios = (f"\nCPU per poll at {a.long:g} s / at 1 s ({a.count:,} BMCs): "
              f"{long_['cpu_ms_per_poll'] / short['cpu_ms_per_poll']:.2f}x; at {a.long:g} s with "
              f"{a.long_count:,} BMCs / at 1 s with {a.count:,}: "
              f"{big['cpu_ms_per_poll'] / short['cpu_ms_per_poll']:.2f}x; "
              f"processes 2 / 1 children: {p2 / p1:.2f}x the polls per second.\n")
    print(table + ratios)
    if a.write_docs:
        report.section("engine", table + ratios)


if __name__ == "__main__":
    main()
