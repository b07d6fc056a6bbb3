"""What every benchmark sets up: a private redis-server, a simulated fleet, a
worker configuration."""

import os
import subprocess
import sys
import time

from farm import inventory
from farm.sim.fleet import pick
from farm.sim.ports import free_tcp_port, free_udp_range
from farm.store import Store

BIN = os.path.dirname(sys.executable)
PASSWORD = "bench-password"  # the simulator's throwaway credential
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid, with_children=True):
    """user+sys seconds of a live process (and its live children), from /proc."""
    pids = [pid]
    if with_children:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                            pids.append(int(entry))
                except OSError:
                    pass
    total = 0.0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
        except OSError:
            pass
    return total


class PrivateRedis:
    """A redis-server on a free port for the length of a `with` block."""

    def __init__(self, work):
        self.port = free_tcp_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--dir", work], stdout=subprocess.DEVNULL)
        self.store = Store(self.url, "bench")
        deadline = time.monotonic() + 10
        while True:
            try:
                self.store.ping()
                break
            except Exception:
                if time.monotonic() > deadline:
                    self.close()
                    raise
                time.sleep(0.05)

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Fleet:
    """A farm-sim process; `hung` names the BMCs that never answer."""

    def __init__(self, count, hung_fraction, work):
        self.base = free_udp_range(count)
        self.inv = os.path.join(work, f"inv-{self.base}.yaml")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "farm-sim"), "--count", str(count), "--base-port", str(self.base),
             "--hung-fraction", str(hung_fraction), "--inventory", self.inv],
            env=dict(os.environ, FARM_SIM_PASSWORD=PASSWORD), stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.inv) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(self.inv) as f:
            self.nodes = inventory.parse(f.read(), self.inv)
        self.hung = {self.nodes[i].name for i in pick(count, hung_fraction, 0)}
        self.healthy = len(self.nodes) - len(self.hung)

    def cpu(self):
        return proc_cpu(self.proc.pid, with_children=False)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def worker_conf(path, redis_url, executor, interval, timeout, pool):
    with open(path, "w") as f:
        f.write(f"[coordination]\nbackend_url = {redis_url}\nnamespace = bench\n"
                f"[worker]\nexecutor = {executor}\npoll_interval = {interval}\nbmc_timeout = {timeout}\n"
                f"workers_pool_size = {pool}\n[metrics]\nport = 0\n")
    return path
