"""Real parts for tests, benchmarks and the demo's kind of work: a private
redis-server on a free loopback port, stopped by pid, waiting for a
condition with a deadline, reading a daemon's metrics. One place for both
tests/ and bench/."""

import os
import signal
import subprocess
import time
import urllib.request

from farm.sim.ports import free_tcp_port


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """The first truthy value of predicate() within `timeout` seconds, or
    AssertionError naming `what` (a deadline, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def scrape(url):
    """Every sample of a farm daemon's metrics endpoint: {'name{labels}': value}."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {name: float(value) for name, _, value in
            (line.rpartition(" ") for line in text.splitlines() if line and line[0] != "#")}


class RedisServer:
    """A private redis-server on a free port. `config` lines (ACL users,
    requirepass, TLS...) go into a config file, so no secret is in its argv;
    `client` are redis.Redis arguments its readiness check needs."""

    def __init__(self, tmpdir, config=(), **client):
        self.tmpdir = str(tmpdir)
        self.port = free_tcp_port()
        self.proc = None
        self.config = list(config)
        self.client = client

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        os.makedirs(self.tmpdir, exist_ok=True)
        path = os.path.join(self.tmpdir, f"redis-{self.port}.conf")
        with open(path, "w") as f:
            f.write("\n".join([f"port {self.port}", "bind 127.0.0.1", 'save ""', "appendonly no",
                               f"dir {self.tmpdir}"] + self.config) + "\n")
        self.proc = subprocess.Popen(["redis-server", path],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, **self.client)
        wait_for(lambda: _pings(client), 10, what="redis-server to start")
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _pings(client):
    try:
        return client.ping()
    except Exception:
        return False
