"""A staggered bulk power-on at fleet size, as the BMCs see it.

    python -m bench actions [--count 10000] [--batch 200] [--interval 2] [--workers 2]
                            [--write-docs]

COUNT farm-sim BMCs (lean engine, all off, 40 to a PDU label) journal every
Chassis Control they receive (`farm-sim --control-log`): that journal, not
farm, is the oracle. A coordinator and WORKERS workers poll them from a
private Redis. Once every node has been polled off, `farm nodes power all on
--batch B --interval S --spread-by pdu --yes --json` runs as a real process
and waits for the plan to end. Reported:
- each wave's lateness against its plan (its not_before), from the journal:
  when its first and its last command reached a BMC (p50, p99, max);
- the most commands any S-second window held, by the BMCs' clock, against B;
- how many nodes ended on (the state read back after each action, then the
  next poll's);
- the wall time of `farm actions show ID` (text and --json) and `farm actions
  list` at that size (median of 3, process start included).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

from bench import common, report
from bench.common import BIN, Fleet, PrivateRedis, median, percentile
from farm.sim.hardware import ControlJournal


def busiest_window(times, width):
    """The most events in any `width`-second window (two pointers)."""
    times, most, lo = sorted(times), 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= width:
            lo += 1
        most = max(most, hi - lo + 1)
    return most


def journaled_fleet(count, work, off_fraction):
    """(Fleet, journal path): lean BMCs that journal every Chassis Control,
    with still sensors and no SEL growth."""
    journal = os.path.join(work, "controls.log")
    return Fleet(count, 0.0, work, sim_args=[
        "--off-fraction", str(off_fraction), "--control-log", journal, "--sensor-period", "0",
        "--sel-interval", "0"]), journal


def farm(conf, *args, timeout=900):
    t = time.monotonic()
    out = subprocess.run([os.path.join(BIN, "farm"), *args, "--config-file", conf],
                         capture_output=True, text=True, timeout=timeout)
    return out, time.monotonic() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-actions-")
    fleet, journal = journaled_fleet(a.count, work, 1)
    procs = []
    try:
        with PrivateRedis(work) as redis:
            import dataclasses
            store = redis.store
            store.import_nodes([dataclasses.replace(n, labels=(("pdu", f"pdu{i // 40:04d}"),))
                                for i, n in enumerate(fleet.nodes)])
            conf = common.farm_conf(os.path.join(work, "farm.conf"), redis.url, "threads", 10, 5,
                                    1024, membership_timeout=10)
            procs = [common.start("coordinator", conf, work)]
            procs += [common.start("worker", conf, work) for _ in range(a.workers)]
            names = [n.name for n in fleet.nodes]

            def polled_off():
                states = store.node_states(names)
                return sum(1 for s in states.values() if s.get("power_state") == "off")
            deadline = time.monotonic() + 300
            while polled_off() < a.count:
                if time.monotonic() > deadline:
                    raise RuntimeError("the fleet was not polled off within 300 s")
                time.sleep(1)
            out, wall = farm(conf, "nodes", "power", "all", "on", "--batch", str(a.batch),
                             "--interval", str(a.interval), "--spread-by", "pdu", "--yes", "--json")
            if out.returncode != 0:
                raise RuntimeError(f"the power-on failed: {out.stderr[-1000:]}")
            import json
            steps = [json.loads(line) for line in out.stdout.splitlines()]
            action_id = steps[0]["action_id"]
            seen = {name: t for t, name, action in ControlJournal.read(journal) if action == "on"}
            waves = {}
            for s in steps:
                waves.setdefault(s["wave"], []).append(s)
            first, last = [], []
            for members in waves.values():
                due = members[0]["not_before"]
                at = sorted(seen[m["node"]] for m in members if m["node"] in seen)
                first.append(at[0] - due)
                last.append(at[-1] - due)
            first.sort()
            last.sort()
            # the workers' own part: arrival at the BMC against the moment Redis set
            sent = sorted(seen[s["node"]] - s["started_at"] for s in steps if s["node"] in seen)
            most = busiest_window(list(seen.values()), a.interval)
            after = sum(1 for s in steps if s.get("power_after") == "on")
            show = [farm(conf, "actions", "show", action_id)[1] for _ in range(3)]
            show_json = [farm(conf, "actions", "show", action_id, "--json")[1] for _ in range(3)]
            listing = [farm(conf, "actions", "list")[1] for _ in range(3)]
            deadline = time.monotonic() + 120
            while (on := sum(1 for s in store.node_states(names).values()
                             if s.get("power_state") == "on")) < a.count:
                if time.monotonic() > deadline:
                    break
                time.sleep(1)
    finally:
        common.stop(procs)
        fleet.stop()

    def ms(v):
        return round(v * 1000)
    rows = [["waves", len(waves)],
            ["lateness of a wave's first command at a BMC, p50 / p99 / max (ms)",
             f"{ms(percentile(first, 0.5))} / {ms(percentile(first, 0.99))} / {ms(first[-1])}"],
            ["lateness of a wave's last command at a BMC, p50 / p99 / max (ms)",
             f"{ms(percentile(last, 0.5))} / {ms(percentile(last, 0.99))} / {ms(last[-1])}"],
            ["a command's arrival at its BMC after the moment Redis set for it, p50 / p99 / "
             "max (ms)", f"{ms(percentile(sent, 0.5))} / {ms(percentile(sent, 0.99))} / "
                         f"{ms(sent[-1])}"],
            [f"most Chassis Control commands in any {a.interval:g} s window (BMCs' clock; "
             f"limit {a.batch})", most],
            ["Chassis Control commands the BMCs received", len(seen)],
            ["nodes read back on right after their step", after],
            ["nodes polled on afterwards", on],
            ["`farm nodes power` wall time, plan written to last step (s)", round(wall, 1)],
            ["`farm actions show ID` (s, median of 3)", round(median(show), 2)],
            ["`farm actions show ID --json` (s, median of 3)", round(median(show_json), 2)],
            ["`farm actions list` (s, median of 3)", round(median(listing), 2)]]
    table = report.table([f"power on, {a.count:,} nodes, waves of {a.batch} every {a.interval:g} s, "
                          f"spread by pdu, {a.workers} workers", "measured"], rows)
    print(table)
    print(f"work directory: {work}", file=sys.stderr)
    if a.write_docs:
        report.section("actions", table)


if __name__ == "__main__":
    main()
