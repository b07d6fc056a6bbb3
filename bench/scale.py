"""One farm-worker over a large fleet: staleness, CPU and memory per node.

    python -m bench scale [--count 10000] [--interval 60] [--intervals 3] [--repeats 2]
                          [--hung 0,0.1] [--workers 1,2] [--executors threads]
                          [--plot docs/staleness.png] [--write-docs]

Each repeat runs every worker count and executor on an all-healthy fleet and
on one with 10 % hung, alternating. With more than one worker process (on this
one host), a farm-coordinator splits the nodes between them. A worker starts
with an empty schedule; the first interval (plus --settle seconds of start-up) is its warm-up, in which the
staggered first runs spread over the interval. The next --intervals intervals
are measured: every healthy node's staleness (now - last successful poll),
sampled every --sample seconds; each healthy node's longest gap between two
successful polls; the worker's CPU (pool children included) and memory.
"""

import argparse
import json
import os
import sys
import tempfile
import time

from bench import common, report
from bench.common import Fleet, PrivateRedis, farm_conf, median, percentile, proc_cpu, proc_memory
from bench.sampling import Sampler


def scenario(executor, hung_fraction, n_workers, a, work):
    fleet = Fleet(a.count, hung_fraction, work, shards=a.shards)
    redis = PrivateRedis(work)
    procs = []
    try:
        redis.store.import_nodes(fleet.nodes)
        coordination = {"partitions": 1024, "membership_timeout": 10} if n_workers > 1 else {}
        conf = farm_conf(os.path.join(work, f"scale-{redis.port}.conf"), redis.url, executor,
                         a.interval, a.timeout, a.pool, **coordination)
        sim0 = fleet.cpu()
        started = time.time()
        if n_workers > 1:  # one host, one worker per core: a coordinator splits the nodes
            procs.append(common.start("coordinator", conf, work))
        workers = [common.start("worker", conf, work) for _ in range(n_workers)]
        procs += workers
        urls = [common.metrics_url(w) for w in workers]
        warm = a.interval + a.settle
        end = warm + a.intervals * a.interval
        sampler = Sampler(redis.store, fleet.healthy_names, started, a.sample, window=(warm, end))
        peak_rss = peak_pss = 0
        with sampler:
            time.sleep(max(0.0, started + warm - time.time()))
            cpu0, polls0, sim1 = _cpu(workers), _polls(urls), fleet.cpu()
            while time.time() < started + end:
                rss, pss = (sum(m) for m in zip(*(proc_memory(w.pid) for w in workers), strict=True))
                peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
                time.sleep(min(5.0, max(0.0, started + end - time.time())))
            cpu, polls = _cpu(workers) - cpu0, _polls(urls) - polls0
            sim = fleet.cpu() - sim1
        for w in workers:
            if w.poll() is not None:
                raise RuntimeError(f"farm-worker exited early: see {w.log_path}")
        pooled = sorted(sampler.pooled)
        gaps = sampler.gaps(started + warm, started + end)
        late_after = a.interval * 1.05
        late = sum(1 for n in fleet.healthy_names if gaps.get(n, float("inf")) > late_after)
        seconds = end - warm
        return {
            "workers": n_workers, "executor": executor, "hung": len(fleet.hung), "nodes": a.count,
            "stale_p50_s": percentile(pooled, 0.5), "stale_p90_s": percentile(pooled, 0.9),
            "stale_p99_s": percentile(pooled, 0.99), "stale_max_s": pooled[-1] if pooled else None,
            "gap_max_s": max(gaps.values(), default=None), "late_nodes": late,
            "polls_per_s": polls / seconds, "cpu_core_pct": 100 * cpu / seconds,
            "cpu_ms_per_poll": 1000 * cpu / polls if polls else None,
            "rss_mib": peak_rss / 2**20, "pss_mib": peak_pss / 2**20,
            "pss_kib_per_node": peak_pss / 1024 / a.count,
            "sim_cpu_core_pct": 100 * sim / seconds, "sim_startup_cpu_s": sim1 - sim0,
            "sample_errors": sampler.errors, "series": sampler.series, "window": [warm, end],
        }
    finally:
        common.stop(procs)
        fleet.stop()
        redis.close()


def _cpu(workers):
    return sum(proc_cpu(w.pid) for w in workers)


def _polls(urls):
    return sum(common.polls_total(u) for u in urls)


def plot(rows, path, interval):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5))
    seen = set()
    for r in rows:
        key = (r["workers"], r["executor"], r["hung"])
        if key in seen:
            continue  # the first repeat of each scenario
        seen.add(key)
        t = [s[0] for s in r["series"]]
        label = f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}, {r['hung']} hung"
        line, = ax.plot(t, [s[2] for s in r["series"]], label=f"{label}: p99")
        ax.plot(t, [s[1] for s in r["series"]], color=line.get_color(), linestyle=":", label=f"{label}: p50")
        ax.plot(t, [s[3] for s in r["series"]], color=line.get_color(), linestyle="--", linewidth=0.8,
                label=f"{label}: max")
    warm, end = rows[0]["window"]
    ax.axvspan(warm, end, color="0.92", zorder=0, label="measured window")
    ax.axhline(interval, color="k", linewidth=0.6)
    ax.set_xlabel("seconds since farm-worker started")
    ax.set_ylabel("staleness of healthy nodes (s)")
    ax.set_title(f"{rows[0]['nodes']:,} simulated BMCs, poll_interval {interval:g} s, one 2-core host")
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}", file=sys.stderr)


COLUMNS = [("stale_p50_s", "staleness p50 (s)", 1), ("stale_p90_s", "p90", 1), ("stale_p99_s", "p99", 1),
           ("stale_max_s", "max", 1), ("gap_max_s", "longest gap (s)", 1),
           ("late_nodes", "healthy nodes with a gap over 1.05 intervals", 0),
           ("polls_per_s", "polls/s", 1), ("cpu_core_pct", "worker CPU (% of a core)", 1),
           ("cpu_ms_per_poll", "CPU ms per poll", 2), ("rss_mib", "RSS MiB", 0), ("pss_mib", "PSS MiB", 0),
           ("pss_kib_per_node", "PSS KiB per node", 1),
           ("sim_cpu_core_pct", "simulator CPU (% of a core)", 1)]


def summarize(rows):
    out = []
    for key in dict.fromkeys((r["workers"], r["executor"], r["hung"]) for r in rows):
        group = [r for r in rows if (r["workers"], r["executor"], r["hung"]) == key]
        cells = [key[0], key[1], key[2], len(group)]
        for col, _, digits in COLUMNS:
            m = median([r[col] for r in group])
            cells.append(None if m is None else (round(m, digits) if digits else round(m)))
        out.append(cells)
    return report.table(["workers", "executor", "hung", "repeats"] + [c[1] for c in COLUMNS], out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--interval", type=float, default=60.0)
    ap.add_argument("--intervals", type=int, default=3, help="measured intervals after the warm-up")
    ap.add_argument("--settle", type=float, default=10.0, help="start-up seconds added to the warm-up")
    ap.add_argument("--timeout", type=float, default=5.0, help="bmc_timeout")
    ap.add_argument("--pool", type=int, default=128, help="workers_pool_size")
    ap.add_argument("--shards", type=int, default=2, help="simulator processes")
    ap.add_argument("--sample", type=float, default=5.0, help="seconds between staleness samples")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--executors", default="threads")
    ap.add_argument("--hung", default="0,0.1", help="fractions of hung BMCs, comma-separated")
    ap.add_argument("--workers", default="1,2", help="farm-worker processes on this host, comma-separated")
    ap.add_argument("--plot", help="write the staleness-over-time PNG here")
    ap.add_argument("--write-docs", action="store_true", help="put the table into docs/benchmarks.md")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-scale-")
    rows = []
    for _ in range(a.repeats):
        runs = [(n, e, float(h)) for n in a.workers.split(",") for e in a.executors.split(",")
                for h in a.hung.split(",")]
        for n_workers, executor, hung in runs:
            row = scenario(executor, hung, int(n_workers), a, work)
            rows.append(row)
            brief = {k: v for k, v in row.items() if k != "series"}
            print(json.dumps(brief), file=sys.stderr, flush=True)
    with open(os.path.join(work, "scale.json"), "w") as f:
        json.dump(rows, f)
    tables = summarize(rows)
    print(tables)
    if a.plot:
        plot(rows, a.plot, a.interval)
    if a.write_docs:
        report.section("scale", tables + (f"\n\n![staleness over time]({os.path.basename(a.plot)})"
                                          if a.plot else ""))


if __name__ == "__main__":
    main()
