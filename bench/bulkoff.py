"""A one-wave bulk power-off of a whole fleet (off's default: no waves), and
a cancel in the middle of a staggered one, as the BMCs and Redis see them.

    python -m bench bulk-off [--count 10000] [--workers 1] [--write-docs]

COUNT farm-sim BMCs (lean engine, all on) journal every Chassis Control they
receive (`farm-sim --control-log`). A coordinator and WORKERS workers poll
them from a private Redis whose SLOWLOG keeps every call over 10 ms. Once
every node has been polled on:
1. `farm nodes power all off --yes --json` (one wave) runs to its end.
   Reported: Chassis Control commands per BMC (exactly one is right), each
   command's arrival at its BMC after the plan's send moment (p50 / p99 /
   max), the Redis calls over 10 ms (count and the longest), and how often a
   worker logged that it was fenced.
2. `farm nodes power all on --batch COUNT/10 --interval 2`, cancelled after
   its second wave: how many nodes the action still holds once its running
   steps ended (0 is right), and whether any BMC got a command after the
   cancel's moment plus one wave.
"""

import argparse
import collections
import json
import os
import tempfile
import time

import redis as redis_py

from bench import common, report
from bench.actions import farm, journaled_fleet
from bench.common import PrivateRedis, percentile
from farm.sim.hardware import ControlJournal


def wait(what, check, timeout, show=None):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout} s" + (f" ({show()})" if show else ""))
        time.sleep(0.5)


def script_names():
    """SHA1 -> farm's Lua script name, as SLOWLOG shows scripts by SHA."""
    import hashlib

    from farm.store.connection import SCRIPTS
    return {hashlib.sha1(text.encode()).hexdigest(): name  # noqa: S324 (Redis's own naming)
            for name, text in SCRIPTS.items()}


def fenced_lines(procs):
    count = 0
    for p in procs:
        with open(p.log_path) as f:
            count += sum(1 for line in f if "fenced:" in line)
    return count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-bulkoff-")
    fleet, journal = journaled_fleet(a.count, work, 0)
    procs, rows = [], []
    try:
        with PrivateRedis(work) as redis:
            store = redis.store
            store.import_nodes(fleet.nodes)
            names = [n.name for n in fleet.nodes]
            raw = redis_py.Redis(port=redis.port)
            raw.config_set("slowlog-log-slower-than", 10_000)
            raw.config_set("slowlog-max-len", 10_000)
            conf = common.farm_conf(os.path.join(work, "farm.conf"), redis.url, "threads", 10, 5,
                                    1024, membership_timeout=10)
            procs = [common.start("coordinator", conf, work)]
            procs += [common.start("worker", conf, work) for _ in range(a.workers)]

            def polled(state):
                return sum(1 for s in store.node_states(names).values()
                           if s.get("power_state") == state)
            wait("every node polled on", lambda: polled("on") == a.count, 300)
            raw.slowlog_reset()
            fenced0 = fenced_lines(procs[1:])
            out, wall = farm(conf, "nodes", "power", "all", "off", "--yes", "--json")
            if out.returncode != 0:
                raise RuntimeError(f"the power-off failed: {out.stderr[-1000:]}")
            steps = [json.loads(line) for line in out.stdout.splitlines()]
            seen = ControlJournal.read(journal)
            per_bmc = collections.Counter(name for _, name, action in seen if action == "off")
            first = {}
            for t, name, action in seen:
                if action == "off":
                    first.setdefault(name, t)
            late = sorted(first[s["node"]] - s["not_before"] for s in steps if s["node"] in first)
            slow = raw.slowlog_get(10_000)
            scripts = script_names()
            slow_kinds = collections.Counter(
                scripts.get(e["command"].split()[1].decode()[:40], e["command"].split()[0].decode())
                if e["command"].startswith(b"EVALSHA") else e["command"].split()[0].decode()
                for e in slow)
            rows += [
                ["one wave: commands per BMC, exactly one / none / more than one",
                 f"{sum(1 for n in names if per_bmc[n] == 1)} / "
                 f"{sum(1 for n in names if per_bmc[n] == 0)} / "
                 f"{sum(1 for n in names if per_bmc[n] > 1)}"],
                ["one wave: a command's arrival at its BMC after the plan's send moment, "
                 "p50 / p99 / max (s)",
                 f"{percentile(late, 0.5):.2f} / {percentile(late, 0.99):.2f} / {late[-1]:.2f}"],
                ["one wave: Redis calls over 10 ms (SLOWLOG), count / longest (ms) / which",
                 f"{len(slow)} / {max((e['duration'] for e in slow), default=0) / 1000:.1f} / "
                 + (", ".join(f"{k} x{n}" for k, n in slow_kinds.most_common()) or "none")],
                ["one wave: 'fenced' lines in the workers' logs", fenced_lines(procs[1:]) - fenced0],
                ["one wave: `farm nodes power all off` wall time (s)", round(wall, 1)],
            ]
            wait("every node polled off", lambda: polled("off") == a.count, 120,
                 lambda: collections.Counter(s.get("power_state") for s in
                                             store.node_states(names).values()))

            # 2. a staggered on, cancelled after its second wave
            batch = max(1, a.count // 10)
            out, _ = farm(conf, "nodes", "power", "all", "on", "--batch", str(batch),
                          "--interval", "2", "--yes", "--no-wait")
            action_id = out.stdout.strip()
            began = time.monotonic()
            wait("two waves", lambda: store.action(action_id)["done"] >= 2 * batch, 120)
            cancelled_at = time.time()
            cancel, _ = farm(conf, "actions", "cancel", action_id)
            wait("the cancelled action to end",
                 lambda: store.action(action_id).get("finished_at"), 120)
            record = store.action(action_id)
            held = len(store.nodes_in_actions(names))
            late_cmds = sum(1 for t, _, action in ControlJournal.read(journal)
                            if action == "on" and t > cancelled_at + 2.1)
            rows += [
                [f"cancel after 2 waves of {batch}: steps done / cancelled / failed",
                 f"{record['done']} / {record['cancelled']} / {record['failed']}"],
                ["cancel: nodes the action still holds after it ended", held],
                ["cancel: 'on' commands a BMC received later than one wave after the cancel",
                 late_cmds],
                ["cancel: seconds from the plan to its end", round(time.monotonic() - began, 1)],
            ]
    finally:
        common.stop(procs)
        fleet.stop()
    report.publish("bulk-off", [f"bulk power, {a.count:,} nodes, {a.workers} worker(s)", "measured"],
                   rows, work, a.write_docs)


if __name__ == "__main__":
    main()
