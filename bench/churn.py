"""No stall on change: healthy nodes' longest gap while the inventory changes
every few seconds and while a second worker joins.

    python -m bench churn [--count 1000] [--interval 1] [--window 30] [--every 5] [--write-docs]

A coordinator and one farm-worker poll COUNT BMCs. After a warm-up, two
windows of WINDOW seconds are measured; in both, every EVERY seconds one
spare BMC is imported or a previously imported spare removed (so each
worker re-reads the inventory and re-sets its wheels). At the start of the
second window a second farm-worker starts: the leader publishes a new
placement and about half the nodes move to it. For each window: each
watched node's longest time between two successful polls, from the
`last_ok_at` stamps sampled every interval / 4 (stamps of one host's clock).
Target: no gap above interval + 0.2 s.
"""

import argparse
import json
import os
import sys
import tempfile
import time

from bench import common, report
from bench.common import Fleet, PrivateRedis
from bench.sampling import Sampler


def churn(store, spares, until, every, log):
    """Import one spare, later remove it, alternating, until `until` (epoch)."""
    added = []
    i = 0
    while time.time() < until:
        if added and i % 2:
            store.remove_nodes([added.pop(0).name])
        else:
            store.import_nodes([spares[(i // 2) % len(spares)]])
            added.append(spares[(i // 2) % len(spares)])
        log.append(time.time())
        i += 1
        time.sleep(max(0.0, min(every, until - time.time())))


def run(a, work):
    fleet = Fleet(a.count + a.spares, 0.0, work, shards=a.shards)
    watched, spares = fleet.nodes[:a.count], fleet.nodes[a.count:]
    procs = []
    try:
        with PrivateRedis(work) as redis:
            redis.store.import_nodes(watched)
            conf = common.farm_conf(os.path.join(work, f"churn-{redis.port}.conf"), redis.url,
                                    a.executor, a.interval, a.timeout, 1024,
                                    partitions=256, membership_timeout=5)
            procs.append(common.start("coordinator", conf, work))
            procs.append(common.start("worker", conf, work))
            started = time.time()
            warm = 3 * a.interval + a.settle
            windows = [(started + warm, started + warm + a.window),
                       (started + warm + a.window, started + warm + 2 * a.window)]
            changes = []
            names = [n.name for n in watched]
            with Sampler(redis.store, names, started, a.interval / 4) as sampler:
                time.sleep(max(0.0, windows[0][0] - time.time()))
                churn(redis.store, spares, windows[0][1], a.every, changes)
                procs.append(common.start("worker", conf, work))
                churn(redis.store, spares, windows[1][1], a.every, changes)
            rows = []
            for label, (since, until) in zip(("inventory changes", "inventory changes + a worker joins"),
                                             windows, strict=True):
                gaps = sampler.gaps(since, until)
                late = sorted(g for g in gaps.values() if g > a.interval + 0.2)
                rows.append({"window": label, "seconds": round(until - since, 1),
                             "changes": sum(1 for t in changes if since <= t <= until),
                             "gap_max_s": max(gaps.values(), default=None),
                             "nodes_over_interval_plus_0.2s": len(late),
                             "nodes_measured": len(gaps)})
            moved = sum(1 for h in sampler.polls.values() if h and h[-1][1] != h[0][1])
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a farm process exited early: see {p.log_path}")
            return rows, moved, sampler.errors
    finally:
        common.stop(procs)
        fleet.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--spares", type=int, default=20)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=2.0, help="bmc_timeout")
    ap.add_argument("--window", type=float, default=30.0)
    ap.add_argument("--every", type=float, default=5.0, help="seconds between inventory changes")
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--executor", default="threads")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-churn-")
    rows, moved, errors = run(a, work)
    print(json.dumps({"rows": rows, "moved_nodes": moved, "sample_errors": errors}), file=sys.stderr)
    cols = ["window", "seconds", "changes", "gap_max_s", "nodes_over_interval_plus_0.2s", "nodes_measured"]
    table = report.table(cols, [[r[c] if not isinstance(r[c], float) else round(r[c], 3)
                                 for c in cols] for r in rows])
    table += (f"\n\n{a.count} BMCs, poll_interval {a.interval:g} s, executor {a.executor}; "
              f"about {moved} nodes moved to the joining worker.")
    print(table)
    if a.write_docs:
        report.section("churn", table)


if __name__ == "__main__":
    main()
