"""What every benchmark sets up: a private redis-server, a simulated fleet, a
worker configuration."""

import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import time

from farm.fleet import inventory
from farm.sim.fleet import pick
from farm.sim.harness import RedisServer, scrape, wait_for  # noqa: F401 (benches import them from here)
from farm.sim.ports import free_tcp_range, free_udp_range
from farm.store import Store

BIN = os.path.dirname(sys.executable)
PASSWORD = "bench-password"  # the simulator's throwaway credential
TICK = os.sysconf("SC_CLK_TCK")


def children_cpu():
    """user+sys seconds of this process's waited-for children, from the OS."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                pass
    return found


def proc_cpu(pid, with_children=True):
    """user+sys seconds of a live process (and its live children), from /proc."""
    total = 0.0
    for p in [pid] + (_children(pid) if with_children else []):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
        except OSError:
            pass
    return total


class PrivateRedis(RedisServer):
    """A redis-server on a free port for the length of a `with` block, with
    farm's Store on it as `.store`."""

    def __init__(self, work):
        super().__init__(work)
        self.start()
        self.store = Store(self.url, "bench")

    def close(self):
        self.store.close()
        self.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Fleet:
    """`shards` farm-sim processes serving `count` BMCs between them; `hung`
    names the BMCs that never answer. Shard i listens on 127.0.0.(i+1), so
    a fleet is not limited to one address's 64k ports. One process serves
    up to 20,000 BMCs; more shards let the simulator use more than one core.
    The lean engine by default: pyghmi's server costs the host as much CPU
    as farm itself, which then measures the simulator, not farm."""

    def __init__(self, count, hung_fraction, work, shards=1, engine="lean", sim_args=()):
        self.procs, self.nodes, self.hung = [], [], set()
        self.base = None  # shard 0's first port: names this fleet's files
        sizes = [count // shards + (1 if i < count % shards else 0) for i in range(shards)]
        invs = []
        for i, size in enumerate(sizes):
            address = f"127.0.0.{i + 1}"
            port = (free_tcp_range(size, address) if "redfish" in sim_args
                    else free_udp_range(size, address))
            self.base = self.base or port
            inv = os.path.join(work, f"inv-{i}-{port}.yaml")
            self.procs.append(subprocess.Popen(
                [os.path.join(BIN, "farm-sim"), "--engine", engine, "--count", str(size),
                 "--address", address, "--base-port", str(port), "--name-prefix", f"bmc{i}-",
                 "--hung-fraction", str(hung_fraction), "--inventory", inv, *sim_args],
                env=dict(os.environ, FARM_SIM_PASSWORD=PASSWORD), stderr=open(f"{inv}.log", "w")))
            invs.append((inv, size))
        deadline = time.monotonic() + 120 + count / 1000
        for (inv, size), proc in zip(invs, self.procs, strict=True):
            while not os.path.exists(inv):
                if time.monotonic() > deadline or proc.poll() is not None:
                    self.stop()
                    with open(f"{inv}.log") as f:
                        raise RuntimeError(f"farm-sim did not write {inv}: {f.read()[-500:]}")
                time.sleep(0.05)
            with open(inv) as f:
                nodes = inventory.parse(f.read(), inv)
            self.hung |= {nodes[i].name for i in pick(size, hung_fraction, 0)}
            self.nodes += nodes
        self.inventories = [inv for inv, _ in invs]
        self.healthy = len(self.nodes) - len(self.hung)
        self.healthy_names = [n.name for n in self.nodes if n.name not in self.hung]

    def cpu(self):
        return sum(proc_cpu(p.pid, with_children=False) for p in self.procs)

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(10)



def farm_conf(path, redis_url, executor, interval, timeout, pool, **coordination):
    """A farm.conf for both daemons; `coordination` adds [coordination] options."""
    extra = "".join(f"{k} = {v}\n" for k, v in coordination.items())
    with open(path, "w") as f:
        f.write(f"[coordination]\nbackend_url = {redis_url}\nnamespace = bench\n{extra}"
                f"[worker]\nexecutor = {executor}\npoll_interval = {interval}\nbmc_timeout = {timeout}\n"
                f"workers_pool_size = {pool}\n[metrics]\nport = 0\ncoordinator_port = 0\n")
    return path


worker_conf = farm_conf


def worker_window(fleet, work, interval, warmup, window, executor="threads", timeout=5.0,
                  extra=""):
    """One farm-worker over
    `fleet` in a private Redis: (its CPU seconds, metrics at the start,
    metrics at the end) of a window after `warmup` seconds. `extra` is more
    farm.conf text ([worker] options, [tasks], ...)."""
    with PrivateRedis(work) as redis:
        redis.store.import_nodes(fleet.nodes)
        conf = os.path.join(work, f"farm-{redis.port}.conf")
        farm_conf(conf, redis.url, executor, interval, timeout, 1024)
        with open(conf, "a") as f:
            f.write(extra)
        proc = start("worker", conf, work)
        try:
            url = metrics_url(proc)
            time.sleep(warmup)  # past start-up and the first logins
            cpu0, m0 = proc_cpu(proc.pid), scrape(url)
            time.sleep(window)
            cpu, m1 = proc_cpu(proc.pid) - cpu0, scrape(url)
        finally:
            stop([proc])
    return cpu, m0, m1


def start(kind, conf, work, open_files=None):
    """Start farm-worker or farm-coordinator; its log is in proc.log_path.
    `open_files`: its hard limit on open files (as root: beyond this one's)."""
    start.count = getattr(start, "count", 0) + 1
    log_path = os.path.join(work, f"{kind}-{os.getpid()}-{start.count}.log")
    limit = None if open_files is None else (
        lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files)))
    proc = subprocess.Popen([os.path.join(BIN, f"farm-{kind}"), "--config-file", conf],
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT, preexec_fn=limit)
    proc.log_path = log_path
    return proc


def metrics_url(proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(proc.log_path) as f:
            m = re.search(r"metrics on (http://\S+/metrics)", f.read())
        if m:
            return m.group(1)
        time.sleep(0.05)
    raise RuntimeError(f"{proc.log_path}: no metrics address within {timeout} s")


def polls(values):
    """farm_polls_total summed over results, from scraped samples."""
    return sum(v for k, v in values.items() if k.startswith("farm_polls_total{"))


def ok_polls(values):
    """farm_polls_total{result="ok"} summed over drivers."""
    return sum(v for k, v in values.items()
               if k.startswith("farm_polls_total{") and 'result="ok"' in k)


def polls_total(url):
    """farm_polls_total summed over results, from a worker's metrics endpoint."""
    return polls(scrape(url))


def stop(procs, sig=signal.SIGTERM):
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def proc_memory(pid):
    """(RSS, PSS) bytes of a process and its children. PSS shares pages
    between the processes that map them, so it is the fair sum for a pool."""
    rss = pss = 0
    for p in [pid] + _children(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return rss, pss


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
