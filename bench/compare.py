"""farm against the tools a user would pick instead, in one run, same fleet.

    python -m bench compare [--counts 200,1000] [--repeats 3] [--rounds 3] [--threads 32] [--write-docs]

Contenders: farm-worker (threads, processes), FreeIPMI's ipmipower -D LAN_2_0
(one process over all hosts), ipmitool -I lanplus forked per node (32 at a
time), and plain pyghmi in a 32-thread pool (bench/stock_pyghmi.py). Each
repeat runs every contender once, alternating, first on an all-healthy fleet
(cost per poll) and then with 10 % hung (time until every healthy node was
polled once). Prints Markdown tables of medians. Needs redis-server,
ipmitool and ipmipower (Debian: freeipmi-tools). The simulator's password is
passed on ipmipower's command line: a throwaway test credential.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from bench import common, report
from bench.common import PASSWORD, Fleet, PrivateRedis, children_cpu, farm_conf, median, proc_cpu

TIMEOUT = 2.0  # per poll, every contender




def run_ipmipower(fleet, rounds):
    hosts = ",".join(f"{n.address}:{n.port}" for n in fleet.nodes)
    cpu0, ok, done = children_cpu(), 0, []
    for _ in range(rounds):
        start = time.monotonic()
        proc = subprocess.Popen(["ipmipower", "-D", "LAN_2_0", "-h", hosts, "-u", "admin", "-p", PASSWORD,
                                 "--stat", f"--session-timeout={int(TIMEOUT * 1000)}"],
                                stdout=subprocess.PIPE, text=True)
        last, n_ok = start, 0
        for line in proc.stdout:
            if line.rstrip().endswith((": on", ": off")):
                n_ok += 1
                last = time.monotonic()
        proc.wait()
        ok += n_ok
        done.append(last - start if n_ok >= fleet.healthy else None)
    return {"polls": ok, "cpu_s": children_cpu() - cpu0, "healthy_done_s": done}


def run_ipmitool(fleet, rounds, threads):
    env = dict(os.environ, IPMI_PASSWORD=PASSWORD)

    def one(node):
        r = subprocess.run(["ipmitool", "-I", "lanplus", "-H", node.address, "-p", str(node.port),
                            "-U", node.username, "-E", "-R", "1", "-N", str(int(TIMEOUT)),
                            "chassis", "power", "status"], env=env, capture_output=True, text=True)
        return r.returncode == 0 and "Chassis Power is" in r.stdout, time.monotonic()
    cpu0, ok, done = children_cpu(), 0, []
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(rounds):
            start = time.monotonic()
            results = list(pool.map(one, fleet.nodes))
            good = [t for r, t in results if r]
            ok += len(good)
            done.append(max(good) - start if len(good) >= fleet.healthy else None)
    return {"polls": ok, "cpu_s": children_cpu() - cpu0, "healthy_done_s": done}


def run_stock_pyghmi(fleet, rounds, threads, work):
    hosts = os.path.join(work, f"hosts-{fleet.base}.txt")
    with open(hosts, "w") as f:
        f.writelines(f"{n.address} {n.port} {n.username}\n" for n in fleet.nodes)
    out = subprocess.run([sys.executable, "-m", "bench.stock_pyghmi", hosts, str(rounds), str(threads),
                          str(TIMEOUT)], env=dict(os.environ, BENCH_PASSWORD=PASSWORD),
                         capture_output=True, text=True, timeout=600)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    done = [d if i < len(r["round_healthy_done_s"]) and r["ok"] else None
            for i, d in enumerate(r["round_healthy_done_s"])]
    return {"polls": r["ok"], "cpu_s": r["cpu_s"], "healthy_done_s": done, "stuck": r["stuck"]}


def run_farm(fleet, executor, work, window, threads):
    with PrivateRedis(work) as redis:
        store = redis.store
        store.import_nodes(fleet.nodes)
        conf = farm_conf(os.path.join(work, f"farm-{redis.port}.conf"), redis.url, executor, 1, TIMEOUT,
                         threads)
        with open(conf, "a") as f:  # the same cipher suite as ipmipower's default (-I 3)
            f.write(f"[worker]\ncipher_suites = {CIPHER_SUITE}\n")
        start = time.monotonic()
        worker = common.start("worker", conf, work)
        try:
            url = common.metrics_url(worker)
            done = None
            while time.monotonic() - start < 60:
                states = store.node_states(fleet.healthy_names)
                if all(s.get("power_state") for s in states.values()):
                    done = time.monotonic() - start
                    break
                time.sleep(0.05)
            time.sleep(1.0)  # past start-up and the first pass
            cpu0, polls0 = proc_cpu(worker.pid), common.polls_total(url)
            time.sleep(window)
            cpu, polls = proc_cpu(worker.pid) - cpu0, common.polls_total(url) - polls0
        finally:
            common.stop([worker])
        return {"polls": polls, "cpu_s": cpu, "healthy_done_s": [done]}


CIPHER_SUITE = 3  # ipmipower's default; the lean simulator offers 17 and 3


def rounded(values):
    m = median(values)
    return None if m is None else round(m, 3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="200,1000", help="fleet sizes, comma-separated")
    ap.add_argument("--shards", type=int, default=2, help="simulator processes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--window", type=float, default=10.0, help="farm's measured steady window, s")
    ap.add_argument("--farm-in-flight", type=int, default=1024, help="farm's workers_pool_size")
    ap.add_argument("--only", default="", help="comma-separated contender name prefixes")
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-compare-")
    contenders = {
        "farm-worker (threads)": lambda f: run_farm(f, "threads", work, a.window, a.farm_in_flight),
        "farm-worker (processes)": lambda f: run_farm(f, "processes", work, a.window,
                                                      a.farm_in_flight),
        "ipmipower -D LAN_2_0": lambda f: run_ipmipower(f, a.rounds),
        "ipmitool -I lanplus per node": lambda f: run_ipmitool(f, a.rounds, a.threads),
        f"pyghmi, {a.threads}-thread pool": lambda f: run_stock_pyghmi(f, a.rounds, a.threads, work),
    }
    if a.only:
        keep = tuple(p.strip() for p in a.only.split(","))
        contenders = {k: v for k, v in contenders.items() if k.startswith(keep)}
    counts = [int(c) for c in a.counts.split(",")]
    cost, sim_cost, hung = ({(c, n): [] for c in counts for n in contenders} for _ in range(3))
    for _ in range(a.repeats):
        for count in counts:
            for fraction in (0.0, 0.1):
                fleet = Fleet(count, fraction, work, shards=a.shards)
                try:
                    for name, run in contenders.items():
                        sim0 = fleet.cpu()
                        r = run(fleet)
                        print(json.dumps({"contender": name, "count": count, "hung": fraction, **r}),
                              file=sys.stderr, flush=True)
                        per_k = 1000 / r["polls"] if r["polls"] else None
                        if fraction == 0.0:
                            cost[count, name].append(r["cpu_s"] * per_k if per_k else None)
                            sim_cost[count, name].append((fleet.cpu() - sim0) * per_k if per_k else None)
                        else:
                            hung[count, name].extend(r["healthy_done_s"])
                finally:
                    fleet.stop()
    header = ["contender"]
    for c in counts:
        header += [f"client CPU s per 1,000 polls, {c} BMCs", f"simulator CPU s per 1,000 polls, {c} BMCs"]
    header += [f"every healthy node polled once, {c} BMCs, 10 % hung (s)" for c in counts]
    rows = []
    for name in contenders:
        row = [name]
        for c in counts:
            row += [rounded(cost[c, name]), rounded(sim_cost[c, name])]
        row += [rounded(hung[c, name]) for c in counts]
        rows.append(row)
    tables = report.table(header, rows)
    print(tables)
    if a.write_docs:
        report.section("compare", tables)


if __name__ == "__main__":
    main()
