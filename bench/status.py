"""`farm status` with sites against the same command before sites, in one
run: COUNT nodes in one site read by farm as of BASELINE (a git revision,
checked out beside this tree), and by this tree; then the same COUNT in
SITES sites, read by this tree.

    python -m bench status [--count 100000] [--sites 20] [--workers 40]
                           [--repeats 7] [--baseline 330399a] [--write-docs]

One private Redis holds each farm in its own namespace: the inventory, a
published assignment over WORKERS workers (two per site with sites), and
each worker's report with its tally, as live workers keep them. No worker
runs (the reports are written once, with a heartbeat an hour long). Each
command runs as a real process, the three alternating, REPEATS times; the
median wall time (process start included) is reported, and the ratio of
SITES sites on this tree to one site on the baseline.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench import report
from bench.common import BIN, PrivateRedis, median
from farm.coordination import placement
from farm.model import Node
from farm.store import Store

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTITIONS = 1024
# farm as of another tree: the editable install's finder set aside, the
# tree first on sys.path (PYTHONPATH alone does not override it)
RUNNER = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in "
          "getattr(f, '__module__', '')]; sys.path.insert(0, sys.argv.pop(1)); "
          "sys.argv[0] = 'farm'; from farm.cli import main; main()")


def fill(store, count, sites, workers):
    """COUNT nodes over SITES sites (one: the default site, as a farm
    before sites has it), an assignment over WORKERS workers, their reports."""
    names = [f"s{i:02d}" for i in range(sites)] if sites > 1 else ["default"]
    nodes = [Node(f"node-{i:06d}", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 623, "admin",
                  "bench-password", labels=(("rack", f"r{i // 100:04d}"),),
                  site=names[i % len(names)]) for i in range(count)]
    store.import_nodes(nodes)
    members = [f"worker-{w:03d}" for w in range(workers)]
    served = {m: (1, (names[w % len(names)],), ()) for w, m in enumerate(members)}
    placements = placement.place_sites(served, names, PARTITIONS)
    epoch = store.hold_lease("bench", 3600)
    store.publish_assignment("bench", epoch, members, placements, time.time())
    per = count // workers
    for w, m in enumerate(members):
        site = names[w % len(names)]
        tally = {"nodes": per, "never_polled": 0, "stale": 0, "power": {"on": per},
                 "failing": {}, "sites": {site: {"nodes": per, "fresh": per}}}
        store.report_worker(m, {"host": "bench", "pid": w, "sites": [site], "backup_sites": [],
                                "nodes": per, "last_heartbeat": time.time(), "clock_skew": 0.0,
                                "tally": tally}, ttl=3600)


def conf(path, url, namespace):
    with open(path, "w") as f:
        f.write(f"[coordination]\nbackend_url = {url}\nnamespace = {namespace}\n"
                f"[worker]\npoll_interval = 60\n")
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--sites", type=int, default=20)
    ap.add_argument("--workers", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--baseline", default="330399a")
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-status-")
    old = os.path.join(work, "baseline")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-q", old, a.baseline],
                   check=True)
    try:
        with PrivateRedis(work) as redis:
            runs = {}
            for namespace, sites in (("one", 1), ("sites", a.sites)):
                fill(Store(redis.url, namespace), a.count, sites, a.workers)
            farm = [os.path.join(BIN, "farm")]
            baseline = [sys.executable, "-c", RUNNER, old]
            cases = [(f"one site, farm {a.baseline} (before sites)", baseline, "one"),
                     ("one site, this tree", farm, "one"),
                     (f"{a.sites} sites, this tree", farm, "sites")]
            for _ in range(a.repeats):
                for label, command, namespace in cases:
                    cfg = conf(os.path.join(work, f"{namespace}.conf"), redis.url, namespace)
                    t = time.monotonic()
                    out = subprocess.run([*command, "status", "--json", "--config-file", cfg],
                                         capture_output=True, text=True, timeout=600)
                    runs.setdefault(label, []).append(time.monotonic() - t)
                    if out.returncode != 0:
                        raise RuntimeError(f"{label}: {out.stderr[-800:]}")
                    got = json.loads(out.stdout)
                    # the baseline is the code before sites; this tree serves every site
                    if ("sites" in got) != (command is farm) or got.get("dark"):
                        raise RuntimeError(f"{label}: not the status expected: {out.stdout[:800]}")
            for label, times in runs.items():
                print(label, [round(t, 3) for t in times], file=sys.stderr)
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", old], check=False)
    medians = {label: median(times) for label, times in runs.items()}
    rows = [[label, f"{m:.3f}"] for label, m in medians.items()]
    first, last = (medians[c[0]] for c in (cases[0], cases[-1]))
    table = report.table(["farm status --json", f"wall time, {a.count:,} nodes, {a.workers} "
                          f"workers (s, median of {a.repeats})"], rows)
    table += (f"\n\n{a.sites} sites on this tree against one site before sites: "
              f"{last / first:.2f}x (target: at most 1.5x).")
    print(table)
    if a.write_docs:
        report.section("status", table)


if __name__ == "__main__":
    main()
