"""Redfish at fleet scale: one farm-worker against the loops a user would
write, on the same simulated fleet.

    python -m bench redfish-scale [--count 10000] [--latency 1] [--hung 0.05]
        [--interval 60] [--window 300] [--clients farm,asyncio,requests]
        [--farm-option worker.bmc_timeout=8 ...] [--write-docs]

COUNT Redfish BMCs (farm-sim --protocol redfish --tls, the current shape,
one asyncio loop per shard) answer every request in LATENCY s; a FRACTION
of them is hung (accepts, never answers). Each client polls every BMC's
PowerState every INTERVAL s:
- farm: one farm-worker with its defaults but poll_interval (and any
  --farm-option), reading Redis as operators do;
- asyncio: bench.plain_redfish's aiohttp loop (kept connections, a token
  per BMC, no farm);
- requests: bench.plain_redfish's thread pool of 64 with a kept
  requests.Session per BMC.
After a warm-up of one interval plus --settle s (first contacts), a window
of --window s is measured: polls/s, the worst age of a healthy node's last
good reading (sampled every 5 s), each healthy node's longest gap between
two good readings (its lateness: gap - interval), client CPU per poll,
peak RSS per node (the whole process's RSS over COUNT).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench import common, report
from bench.common import Fleet, PrivateRedis, percentile, proc_cpu, proc_memory
from bench.sampling import Sampler


def farm_conf(path, redis_url, interval, options):
    sections = {"coordination": {"backend_url": redis_url, "namespace": "bench"},
                "worker": {"poll_interval": interval}, "metrics": {"port": 0}}
    for option in options:
        key, _, value = option.partition("=")
        section, _, name = key.partition(".")
        sections.setdefault(section, {})[name] = value
    with open(path, "w") as f:
        for section, values in sections.items():
            f.write(f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return path


def ages_and_gaps(good, names, started, since, until, sample=5.0):
    """From each node's good-reading times (epoch): the ages sampled every
    `sample` s in [since, until], and each node's longest gap between good
    readings ending in that window, or still open at `until` (a node never
    read counts from `started`)."""
    ages, gaps = [], {}
    t = since
    while t <= until:
        for name in names:
            before = [g for g in good.get(name, ()) if g <= t]
            ages.append(t - (before[-1] if before else started))
        t += sample
    for name in names:
        times = [started] + sorted(g for g in good.get(name, ()) if g <= until)
        inside = [b - a for a, b in zip(times, times[1:], strict=False) if since <= b]
        gaps[name] = max(inside + [until - times[-1]])
    return sorted(ages), gaps


def first_reads(good, names, started):
    """Seconds from the start until every one of `names` had a good read."""
    firsts = [min(good[n]) for n in names if good.get(n)]
    return max(firsts) - started if len(firsts) == len(names) else None


def summary(client, polls, failed, cpu, rss, ages, gaps, a, first):
    late = sorted(max(0.0, g - a.interval) for g in gaps.values())
    return {"client": client, "first_read_s": first, "polls": polls, "failed": failed,
            "polls_per_s": polls / a.window, "cpu_ms_per_poll": 1000 * cpu / polls if polls else None,
            "worst_age_s": ages[-1] if ages else None, "age_p99_s": percentile(ages, 0.99),
            "longest_gap_s": max(gaps.values(), default=None),
            "lateness_p99_s": percentile(late, 0.99), "lateness_max_s": late[-1] if late else None,
            "nodes_over_1_1x": sum(1 for g in gaps.values() if g > 1.1 * a.interval),
            "rss_mib": rss / 2**20, "rss_kib_per_node": rss / 1024 / a.count}


def run_farm(fleet, work, a):
    with PrivateRedis(work) as redis:
        redis.store.import_nodes(fleet.nodes)
        conf = farm_conf(os.path.join(work, f"farm-{redis.port}.conf"), redis.url, a.interval,
                         a.farm_option)
        started = time.time()
        # a connection per BMC: as root, room for more than this shell's limit
        proc = common.start("worker", conf, work,
                            open_files=2 * a.count + 1024 if os.geteuid() == 0 else None)
        try:
            url = common.metrics_url(proc)
            sampler = Sampler(redis.store, fleet.healthy_names, started, 5.0,
                              window=(float("inf"), 0))
            rss = 0
            with sampler:
                # the window opens once every healthy node was read (first
                # contacts done), and not before one interval and --settle
                limit = time.time() + 4 * a.interval + a.settle
                while time.time() < limit and (not sampler.series or sampler.series[-1][4]):
                    time.sleep(1.0)
                first = time.time() - started if not sampler.series[-1][4] else None
                warm = max(time.time() - started, a.interval + a.settle)
                end = warm + a.window
                sampler.window = (warm, end)
                time.sleep(max(0.0, started + warm - time.time()))
                cpu0, m0 = proc_cpu(proc.pid), common.scrape(url)
                while time.time() < started + end:
                    rss = max(rss, proc_memory(proc.pid)[0])
                    time.sleep(min(5.0, max(0.0, started + end - time.time())))
                cpu, m1 = proc_cpu(proc.pid) - cpu0, common.scrape(url)
            if proc.poll() is not None:
                raise RuntimeError(f"farm-worker exited early: see {proc.log_path}")
        finally:
            common.stop([proc])
    polls = common.polls(m1) - common.polls(m0)
    ok = common.ok_polls(m1) - common.ok_polls(m0)
    good = {n: [at for at, _ in history] for n, history in sampler.polls.items()}
    with open(os.path.join(work, "farm-good-reads.json"), "w") as f:
        json.dump({"started": started, "good": good}, f)
    last = started + sampler.series[-1][0]  # the last look at Redis
    ages, gaps = ages_and_gaps(good, fleet.healthy_names, started, started + warm, last)
    ages = sorted(sampler.pooled) or ages  # the live samples, where there are some
    return summary("farm", polls, polls - ok, cpu, rss, ages, gaps, a, first)


def run_plain(client, fleet, a):
    warm = a.interval + a.settle
    started = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "bench.plain_redfish", client, *fleet.inventories,
         "--interval", str(a.interval), "--warmup", str(warm), "--window", str(a.window)],
        capture_output=True, text=True, timeout=warm + a.window + 600, check=True)
    r = json.loads(out.stdout)
    ages, gaps = ages_and_gaps(r["good"], fleet.healthy_names, started, started + warm,
                               started + warm + a.window)
    row = summary(client, r["polls"], r["failed"], r["cpu_s"], r["rss"], ages, gaps, a,
                  first_reads(r["good"], fleet.healthy_names, started))
    row["pass_lateness_max_s"] = max(r["lateness"], default=None)
    return row


COLUMNS = [("first_read_s", "every healthy node read once after (s)", 0),
           ("polls_per_s", "polls/s", 1), ("failed", "failed polls", 0),
           ("cpu_ms_per_poll", "client CPU ms per poll", 3), ("worst_age_s", "worst age (s)", 1),
           ("age_p99_s", "age p99 (s)", 1), ("longest_gap_s", "longest gap (s)", 1),
           ("lateness_max_s", "lateness max (s)", 1),
           ("nodes_over_1_1x", "healthy nodes with a gap over 1.1 intervals", 0),
           ("rss_mib", "peak RSS MiB", 0), ("rss_kib_per_node", "RSS KiB per node", 1)]


def render(rows, a):
    """The Markdown table of `rows` and the CPU ratios."""
    text = report.table(
        [f"{a.count:,} BMCs at {a.latency:g} s, {a.hung:.0%} hung, every {a.interval:g} s"]
        + [c[1] for c in COLUMNS],
        [[r["client"]] + [None if r[k] is None else round(r[k], d) if d else round(r[k])
                          for k, _, d in COLUMNS] for r in rows])
    by = {r["client"]: r for r in rows}
    if "farm" in by:
        for other in ("requests", "asyncio"):
            if other in by and by[other]["cpu_ms_per_poll"] and by["farm"]["cpu_ms_per_poll"]:
                ratio = by["farm"]["cpu_ms_per_poll"] / by[other]["cpu_ms_per_poll"]
                text += f"\n\nfarm's CPU per poll is {ratio:.2f}x the plain {other} loop's."
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--hung", type=float, default=0.05)
    ap.add_argument("--interval", type=float, default=60.0)
    ap.add_argument("--window", type=float, default=300.0)
    ap.add_argument("--settle", type=float, default=15.0)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--clients", default="farm,asyncio,requests")
    ap.add_argument("--farm-option", action="append", default=[],
                    help="section.name=value for farm.conf (repeatable)")
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-redfish-scale-")
    rows = []
    for client in a.clients.split(","):
        fleet = Fleet(a.count, a.hung, work, shards=a.shards, sim_args=(
            "--protocol", "redfish", "--tls", "--delay", str(a.latency), "--redfish-shape",
            "current", "--session-timeout", "3600"))
        try:
            sim0 = fleet.cpu()
            row = run_farm(fleet, work, a) if client == "farm" else run_plain(client, fleet, a)
            row["sim_cpu_s"] = fleet.cpu() - sim0
        finally:
            fleet.stop()
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    text = render(rows, a)
    print(text)
    if a.write_docs:
        report.section(f"redfish-scale-{a.count}", text + "\n", bench="redfish-scale")


if __name__ == "__main__":
    main()
