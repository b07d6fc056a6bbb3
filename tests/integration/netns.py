"""Separate networks for tests, made of Linux network namespaces (iproute2's
`ip netns`, veth pairs; needs root, as CI runs): hosts with their own
addresses and routes, every address inside a namespace this module created
and removes. Nothing here touches the machine's own network."""

import os
import signal
import subprocess
import time

from tests.conftest import wait_for


def ip(*args, ns=None):
    cmd = ["ip"] + (["-n", ns] if ns else []) + list(args)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")
    return out.stdout


class Networks:
    """Namespaces named <prefix>-<host>; `link(h1, a1, h2, a2)` joins two
    hosts with a veth pair, a1/a2 (CIDR) on each end; `route` adds a route;
    `spawn(host, argv)` runs a process inside a host (its pid is the
    process's own: `ip netns exec` execs it). `close()` kills what runs
    inside and deletes the namespaces."""

    def __init__(self, hosts):
        if os.geteuid() != 0:
            raise RuntimeError("network namespaces need root (CI runs as root)")
        self.prefix = f"farm{os.getpid() % 100000}"
        self.hosts, self.links, self.procs = [], 0, []
        try:
            for host in hosts:
                ip("netns", "add", self.ns(host))
                self.hosts.append(host)
                ip("link", "set", "lo", "up", ns=self.ns(host))
                # no IPv6 chatter (router solicitations) on the links
                self.run(host, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
                self.run(host, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        except Exception:
            self.close()
            raise

    def ns(self, host):
        return f"{self.prefix}-{host}"

    def run(self, host, *argv):
        out = subprocess.run(["ip", "netns", "exec", self.ns(host), *argv], capture_output=True,
                             text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"{host}: {' '.join(argv)}: {out.stderr.strip()}")
        return out.stdout

    def link(self, host1, addr1, host2, addr2):
        """A veth pair; returns the names of its ends (in host1, in host2)."""
        self.links += 1
        end1, end2 = f"{self.prefix[-6:]}v{self.links}a", f"{self.prefix[-6:]}v{self.links}b"
        ip("link", "add", end1, "netns", self.ns(host1), "type", "veth", "peer", "name", end2,
           "netns", self.ns(host2))
        for host, end, addr in ((host1, end1, addr1), (host2, end2, addr2)):
            ip("addr", "add", addr, "dev", end, ns=self.ns(host))
            ip("link", "set", end, "up", ns=self.ns(host))
        return end1, end2

    def route(self, host, to, via):
        ip("route", "add", to, "via", via, ns=self.ns(host))


    def spawn(self, host, argv, log_path, env=None):
        log = open(log_path, "w")
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(host), *argv], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
        proc.log_path = log_path
        self.procs.append(proc)
        return proc

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for host in self.hosts:
            # anything left inside (a child of a daemon) goes with it
            pids = subprocess.run(["ip", "netns", "pids", self.ns(host)], capture_output=True,
                                  text=True, timeout=10).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", self.ns(host)], capture_output=True, timeout=30)
        wait_for(lambda: not any(self.ns(h) in ip("netns", "list") for h in self.hosts), 10,
                 what="the test's namespaces to go")
