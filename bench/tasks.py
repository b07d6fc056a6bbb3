"""What each task costs per node, and how many nodes one host holds with
all three.

    python -m bench tasks [--count 1000] [--interval 2] [--window 30] [--at-scale 20000]
                          [--write-docs]

1. One task at a time (power, sensors, sel) on COUNT BMCs of the lean
   simulator, every INTERVAL seconds: the worker's CPU and the IPMI round
   trips per pass, in a steady window (sensors: after each BMC's SDR was read
   once; sel: the simulated logs gain an entry every 60 s, so most passes
   find nothing new, as on a healthy fleet).
2. All three together at INTERVAL, 5 x INTERVAL and 10 x INTERVAL (the
   ratios of 60 s, 300 s and 600 s): measured CPU against the sum of the
   single-task costs, which checks the model used for the estimate.
3. The estimate: nodes per core with power every 60 s, sensors every 300 s
   and SEL every 600 s, from the per-pass costs (the power figure at 60 s
   adds its keepalive: docs/benchmarks.md, engine section).
4. With --at-scale N: N BMCs at those very intervals, one 300 s window
   after every node's first sensors and SEL pass: the worker's measured CPU
   per second against the estimate.
"""

import argparse
import json
import sys
import tempfile

from bench import common, report
from bench.common import Fleet

RUNS = {"power": 'farm_polls_total{driver="ipmi",result="ok"}',
        "sensors": 'farm_task_runs_total{result="ok",task="sensors"}',
        "sel": 'farm_task_runs_total{result="ok",task="sel"}'}


def measure(fleet, work, intervals, warmup, window):
    """intervals: task -> seconds. Returns passes, CPU and packets."""
    extra = f"[tasks]\nenabled = {','.join(intervals)}\n" + "".join(
        f"[{task}]\ninterval = {intervals[task]}\n" for task in ("sensors", "sel") if task in intervals)
    cpu, m0, m1 = common.worker_window(fleet, work, intervals.get("power", 60), warmup, window,
                                       extra=extra)

    def delta(key):
        return m1.get(key, 0) - m0.get(key, 0)
    passes = {t: delta(RUNS[t]) for t in intervals}
    failed = sum(delta(k) for k in m1 if k.startswith(("farm_polls_total", "farm_task_runs_total"))
                 and 'result="ok"' not in k)
    return {"passes": passes, "cpu_s": cpu, "packets": delta("farm_bmc_packets_sent_total"),
            "logins": delta("farm_bmc_logins_total"), "failed": failed}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--window", type=float, default=30.0)
    ap.add_argument("--at-scale", type=int, default=0,
                    help="also run this many BMCs at 60 / 300 / 600 s for one 300 s window")
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-tasks-")
    fleet = Fleet(a.count, 0.0, work, sim_args=("--sel-interval", "60", "--sensor-period", "600"))
    rows, single = [], {}
    try:
        for task in ("power", "sensors", "sel"):
            r = measure(fleet, work, {task: a.interval}, warmup=2 * a.interval + 3, window=a.window)
            n = r["passes"][task]
            single[task] = 1000 * r["cpu_s"] / n
            rows.append([task, round(n / a.window, 1), round(single[task], 3),
                         round(r["packets"] / n, 2), r["logins"], r["failed"]])
            print(json.dumps({"task": task, **r}), file=sys.stderr)
        mixed_iv = {"power": a.interval, "sensors": 5 * a.interval, "sel": 10 * a.interval}
        r = measure(fleet, work, mixed_iv, warmup=10 * a.interval + 3, window=max(a.window, 20 * a.interval))
        print(json.dumps({"task": "mixed", **r}), file=sys.stderr)
    finally:
        fleet.stop()
    predicted = sum(single[t] * r["passes"][t] for t in mixed_iv) / 1000
    table = report.table(["task alone, every %g s" % a.interval, "passes/s", "client CPU ms per pass",
                          "packets sent per pass", "logins in window", "failed"], rows)
    # power at 60 s pays a keepalive per poll as well: the engine section's figure
    power_60 = max(single["power"], 0.29)
    per_node_ms_per_s = power_60 / 60 + single["sensors"] / 300 + single["sel"] / 600
    text = (f"{table}\n\nAll three at {a.interval:g} / {5 * a.interval:g} / {10 * a.interval:g} s "
            f"on {a.count:,} BMCs: {r['cpu_s']:.2f} s of CPU in the window against "
            f"{predicted:.2f} s predicted from the single-task costs "
            f"({r['cpu_s'] / predicted:.2f}x); {r['failed']} failed passes.\n\n"
            f"Estimate, power every 60 s (at least {power_60:.2f} ms a poll with its keepalive), "
            f"sensors every 300 s, SEL every 600 s: {per_node_ms_per_s * 1000:.2f} ms of CPU per "
            f"node per 1,000 s, i.e. about {1000 / per_node_ms_per_s:,.0f} nodes per core of "
            f"the worker (derived, not measured at that size).\n")
    if a.at_scale:
        big = Fleet(a.at_scale, 0.0, work, shards=max(1, a.at_scale // 10000),
                    sim_args=("--sel-interval", "3600", "--sensor-period", "600"))
        try:
            real = measure(big, work, {"power": 60, "sensors": 300, "sel": 600}, warmup=330,
                           window=300)
        finally:
            big.stop()
        print(json.dumps({"task": "at-scale", **real}), file=sys.stderr)
        expected = a.at_scale * per_node_ms_per_s / 1000
        text += (f"\nMeasured at {a.at_scale:,} BMCs, power 60 s, sensors 300 s, SEL 600 s, one "
                 f"300 s window: the worker used {real['cpu_s'] / 300:.3f} s of CPU per second "
                 f"({100 * real['cpu_s'] / 300:.1f} % of a core) against {expected:.3f} estimated; "
                 f"passes: {', '.join(f'{k} {v:,.0f}' for k, v in real['passes'].items())}; "
                 f"{real['failed']:.0f} failed.\n")
    print(text)
    if a.write_docs:
        report.section("tasks", text)


if __name__ == "__main__":
    main()
