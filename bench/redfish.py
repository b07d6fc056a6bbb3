"""Client CPU per Redfish poll against an IPMI poll, and against the loop a
user would write with requests and a kept session.

    python -m bench redfish [--count 1000] [--interval 10] [--window 30] [--write-docs]

1. farm-worker polls COUNT Redfish BMCs (farm-sim --protocol redfish, HTTPS)
   every INTERVAL seconds: CPU per poll over a steady window (after every
   BMC's first login), logins in the window.
2. The same for COUNT IPMI BMCs (the lean simulator).
3. The reference: in this process, a thread pool of 64 with one
   requests.Session per BMC (logged in once, its X-Auth-Token kept), a GET
   of each BMC's system every INTERVAL seconds, parsing PowerState.
4. The sensors and sel tasks alone on TASKS_COUNT BMCs every INTERVAL
   seconds, Redfish (HTTPS) then IPMI (the lean simulator): client CPU per
   pass in a steady window (the logs gain an entry every 60 s, so most SEL
   passes find nothing new; a Redfish SEL pass still reads the whole log).
"""

import argparse
import concurrent.futures
import json
import sys
import tempfile
import time

from bench import common, report
from bench.common import Fleet, polls
from bench.plain_redfish import requests_poll
from bench.tasks import measure


def farm_run(fleet, work, interval, warmup, window):
    cpu, m0, m1 = common.worker_window(fleet, work, interval, warmup, window)
    n = polls(m1) - polls(m0)
    ok = common.ok_polls(m1) - common.ok_polls(m0)
    logins = sum(m1.get(k, 0) - m0.get(k, 0) for k in
                 ("farm_bmc_logins_total", "farm_bmc_redfish_logins_total"))
    return {"polls": n, "failed": n - ok, "cpu_ms_per_poll": round(1000 * cpu / n, 3) if n else None,
            "logins": logins, "polls_per_s": round(n / window, 1)}


def requests_loop(nodes, interval, warmup, window):
    """The plain loop: one session per BMC, a GET per BMC per interval."""
    sessions = {}

    def poll(node):
        return requests_poll(sessions, node)

    counted = {"polls": 0, "failed": 0}
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        start = time.monotonic()
        cpu0 = None
        tick = 0
        while True:
            now = time.monotonic()
            if cpu0 is None and now - start >= warmup:
                cpu0, counted = time.process_time(), {"polls": 0, "failed": 0}
            if cpu0 is not None and now - start >= warmup + window:
                break
            batch = [pool.submit(poll, n) for n in nodes]
            for f in batch:
                try:
                    f.result()
                    counted["polls"] += 1
                except Exception:
                    counted["failed"] += 1
            tick += 1
            time.sleep(max(0.0, start + tick * interval - time.monotonic()))
        cpu = time.process_time() - cpu0
    n = counted["polls"]
    return {"polls": n, "failed": counted["failed"],
            "cpu_ms_per_poll": round(1000 * cpu / n, 3) if n else None,
            "logins": 0, "polls_per_s": round(n / window, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--window", type=float, default=30.0)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--tasks-count", type=int, default=200)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-redfish-")
    rows = {}
    fleet = Fleet(a.count, 0.0, work, shards=a.shards, sim_args=("--protocol", "redfish", "--tls",
                                                                 "--session-timeout", "3600"))
    try:
        rows["farm, Redfish (HTTPS)"] = farm_run(fleet, work, a.interval, 2 * a.interval + 5, a.window)
        rows["requests loop, kept sessions (HTTPS)"] = requests_loop(fleet.nodes, a.interval,
                                                                     2 * a.interval, a.window)
    finally:
        fleet.stop()
    fleet = Fleet(a.count, 0.0, work, shards=a.shards)
    try:
        rows["farm, IPMI"] = farm_run(fleet, work, a.interval, 2 * a.interval + 5, a.window)
    finally:
        fleet.stop()
    tasks = {}
    for protocol, sim_args in (("Redfish (HTTPS)", ("--protocol", "redfish", "--tls",
                                                    "--session-timeout", "3600")), ("IPMI", ())):
        fleet = Fleet(a.tasks_count, 0.0, work, shards=a.shards,
                      sim_args=(*sim_args, "--sel-interval", "60", "--sensor-period", "600"))
        try:
            for task in ("sensors", "sel"):
                r = measure(fleet, work, {task: a.interval}, 2 * a.interval + 5, a.window)
                n = r["passes"][task]
                tasks[(task, protocol)] = {"passes": n, "failed": r["failed"],
                                           "cpu_ms": round(1000 * r["cpu_s"] / n, 3) if n else None}
                print(json.dumps({"task": task, "protocol": protocol, **r}), file=sys.stderr)
        finally:
            fleet.stop()
    for name, row in rows.items():
        print(json.dumps({"scenario": name, **row}), file=sys.stderr)
    table = report.table(["client, every %g s, %d BMCs" % (a.interval, a.count), "polls/s",
                          "client CPU ms per poll", "logins in window", "failed"],
                         [[k, r["polls_per_s"], r["cpu_ms_per_poll"], r["logins"], r["failed"]]
                          for k, r in rows.items()])
    rf = rows["farm, Redfish (HTTPS)"]["cpu_ms_per_poll"]
    text = (f"{table}\n\nfarm's Redfish poll costs {rf / rows['farm, IPMI']['cpu_ms_per_poll']:.1f}x "
            f"its IPMI poll and {rf / rows['requests loop, kept sessions (HTTPS)']['cpu_ms_per_poll']:.2f}x "
            f"the plain requests loop.\n")
    ratio = {t: tasks[(t, "Redfish (HTTPS)")]["cpu_ms"] / tasks[(t, "IPMI")]["cpu_ms"]
             for t in ("sensors", "sel")}
    text += "\n" + report.table(
        ["task alone, every %g s, %d BMCs" % (a.interval, a.tasks_count), "client CPU ms per pass",
         "passes in window", "failed"],
        [[f"{t}, {p}", r["cpu_ms"], r["passes"], r["failed"]] for (t, p), r in tasks.items()])
    text += (f"\n\nA Redfish pass costs {ratio['sensors']:.1f}x an IPMI pass for sensors and "
             f"{ratio['sel']:.1f}x for the SEL.\n")
    print(text)
    if a.write_docs:
        report.section("redfish", text)


if __name__ == "__main__":
    main()
