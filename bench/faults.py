"""Faults with real processes and real signals: a worker SIGKILLed, the
leading coordinator SIGKILLed, and the longest time any node went unpolled.

    python -m bench faults [--count 300] [--workers 3] [--repeats 3] [--write-docs]

Each repeat starts a fresh farm: its own Redis, simulator, 2 coordinators and
--workers workers (poll_interval 1 s, membership_timeout 3 s, leader_timeout
4 s, 64 partitions). Every node's successful polls (time, worker) are read
from Redis every 50 ms. Takeover is the time from the SIGKILL until every
node of the killed worker was polled by another worker; failover is the time
until a standby holds the leader lease.
"""

import argparse
import json
import os
import signal
import sys
import tempfile
import time

from bench import common, report
from bench.common import Fleet, PrivateRedis, farm_conf, median, wait_for
from bench.sampling import Sampler
from farm.coordination import placement

INTERVAL, MEMBERSHIP, LEADER, PARTITIONS = 1.0, 3.0, 4.0, 64


def owners(store, nodes):
    a = store.assignment()
    return a, {n.name: a["placement"][placement.partition_of(n.name, PARTITIONS)] for n in nodes}


def repeat(a, work):
    fleet = Fleet(a.count, 0.0, work)
    redis = PrivateRedis(work)
    procs = []
    try:
        store = redis.store
        store.import_nodes(fleet.nodes)
        conf = farm_conf(os.path.join(work, f"faults-{redis.port}.conf"), redis.url, "threads", INTERVAL,
                         1.0, 16, membership_timeout=MEMBERSHIP, leader_timeout=LEADER, partitions=PARTITIONS)
        started = time.time()
        coordinators = [common.start("coordinator", conf, work) for _ in range(2)]
        workers = [common.start("worker", conf, work) for _ in range(a.workers)]
        procs = coordinators + workers
        names = [n.name for n in fleet.nodes]
        with Sampler(store, names, started, 0.05) as sampler:
            wait_for(lambda: (lambda x: x and len(x["members"]) == a.workers)(store.assignment()), 60,
                     what="an assignment over every worker")
            time.sleep(3 * INTERVAL)  # every node polled by its owner
            # SIGKILL a worker
            _, owner = owners(store, fleet.nodes)
            victim = workers[0]
            victim_id = next(m for m in set(owner.values()) if f"-{victim.pid}-" in m)
            orphans = [n for n, o in owner.items() if o == victim_id]
            victim.send_signal(signal.SIGKILL)
            killed = time.time()

            def taken_over():
                last = {n: sampler.polls[n][-1] if sampler.polls[n] else (0, None) for n in orphans}
                return all(t > killed and w != victim_id for t, w in last.values())
            wait_for(taken_over, MEMBERSHIP + 30, what="the killed worker's nodes polled by others")
            takeover = time.time() - killed
            time.sleep(2 * INTERVAL)
            kill_gap = max(sampler.gaps(killed - INTERVAL, time.time()).values(), default=None)
            # SIGKILL the leader
            leader_id = store.leader()
            leader = next(c for c in coordinators if f"-{c.pid}-" in leader_id)
            leader.send_signal(signal.SIGKILL)
            killed = time.time()
            wait_for(lambda: (lambda x: x and x != leader_id)(store.leader()), LEADER + 30,
                     what="a standby to hold the lease")
            failover = time.time() - killed
            time.sleep(3 * INTERVAL)
            leader_gap = max(sampler.gaps(killed, time.time()).values(), default=None)
        return {"takeover_s": takeover, "gap_worker_kill_s": kill_gap, "failover_s": failover,
                "gap_leader_kill_s": leader_gap, "orphans": len(orphans)}
    finally:
        common.stop(procs)
        fleet.stop()
        redis.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-faults-")
    rows = []
    for _ in range(a.repeats):
        rows.append(repeat(a, work))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    cells = []
    for key, what in (("takeover_s", "worker SIGKILL: its nodes polled by others after (s)"),
                      ("gap_worker_kill_s", "worker SIGKILL: longest gap of any node (s)"),
                      ("failover_s", "leader SIGKILL: a standby holds the lease after (s)"),
                      ("gap_leader_kill_s", "leader SIGKILL: longest gap of any node (s)")):
        values = [r[key] for r in rows]
        cells.append([what, round(median(values), 2), round(min(values), 2), round(max(values), 2)])
    tables = report.table(["fault", f"median of {a.repeats}", "min", "max"], cells)
    tables += (f"\n\n{a.count} simulated BMCs, {a.workers} workers, 2 coordinators; "
               f"poll_interval {INTERVAL:g} s, membership_timeout {MEMBERSHIP:g} s, "
               f"leader_timeout {LEADER:g} s, {PARTITIONS} partitions. "
               f"The killed worker owned {median([r['orphans'] for r in rows]):g} nodes (median).")
    print(tables)
    if a.write_docs:
        report.section("faults", tables)


if __name__ == "__main__":
    main()
