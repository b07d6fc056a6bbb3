"""The loops a user would write to poll Redfish BMCs' PowerState, farm's
yardsticks in `bench redfish-scale`. Run as a process of its own, so its
CPU and RSS are its own:

    python -m bench.plain_redfish requests|asyncio INVENTORY.yaml... --interval S
                                  --warmup S --window S

- requests: a thread pool of 64, one requests.Session per BMC (logged in
  once, its X-Auth-Token kept, HTTP/1.1 connections kept), every interval
  a GET of each BMC's system submitted to the pool; a pass waits for its
  last answer (or timeout) before the next one starts.
- asyncio: one aiohttp ClientSession (kept connections, one per BMC), one
  token per BMC, every interval a coroutine per BMC gathered, at most 1,000
  polls at once (a semaphore: 10,000 TLS handshakes at once all miss a 5 s
  timeout on one core, and a loop without a bound never reads a BMC).

Both use a 5 s timeout per request (farm's default bmc_timeout). Printed:
one JSON line of polls, CPU, RSS and, per BMC, the times of its good
reads in the window (epoch), which the bench turns into ages and gaps.
"""

import argparse
import asyncio
import concurrent.futures
import json
import resource
import sys
import time

from farm.fleet import inventory

TIMEOUT = 5.0


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Tally:
    def __init__(self, names, warmup, window):
        self.start = time.monotonic()
        self.measure_from, self.until = self.start + warmup, self.start + warmup + window
        self.good = {n: [] for n in names}
        self.polls = self.failed = 0
        self.cpu0 = None
        self.rss_peak = 0
        self.lateness = []  # seconds each pass started after its scheduled time

    def done(self, name, ok):
        now = time.monotonic()
        if self.cpu0 is None and now >= self.measure_from:  # a pass may span the start
            self.cpu0 = time.process_time()
        if ok:
            self.good[name].append(time.time())
        if self.measure_from <= now <= self.until:
            self.polls += 1
            self.failed += 0 if ok else 1

    def tick(self):
        if self.cpu0 is None and time.monotonic() >= self.measure_from:
            self.cpu0 = time.process_time()
        self.rss_peak = max(self.rss_peak, rss_bytes())
        return time.monotonic() < self.until

    def result(self):
        cpu = time.process_time() - (self.cpu0 or 0)
        return {"polls": self.polls, "failed": self.failed, "cpu_s": cpu, "rss": self.rss_peak,
                "lateness": self.lateness, "good": self.good}


def requests_poll(sessions, node):
    """A node's PowerState with requests, its session (name -> Session)
    made on first use. `verify` goes with each request: a Session's own
    loses to REQUESTS_CA_BUNDLE in the environment."""
    import requests
    s = sessions.get(node.name)
    if s is None:
        s = requests.Session()
        s.verify = node.verify_tls or True
        r = s.post(f"{node.address}/redfish/v1/SessionService/Sessions",
                   json={"UserName": node.username, "Password": node.password},
                   timeout=TIMEOUT, verify=s.verify)
        s.headers["X-Auth-Token"] = r.headers["X-Auth-Token"]
        sessions[node.name] = s
    r = s.get(f"{node.address}/redfish/v1/Systems/1", timeout=TIMEOUT, verify=s.verify)
    return r.json()["PowerState"]


def run_requests(nodes, interval, tally):
    sessions = {}

    def poll(node):
        return requests_poll(sessions, node)

    def one(node):
        if time.monotonic() > tally.until:
            return  # the window is over: end the pass
        try:
            poll(node)
            tally.done(node.name, True)
        except Exception:  # noqa: BLE001 - a failed poll, counted
            tally.done(node.name, False)

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        tick = 0
        while tally.tick():
            scheduled = tally.start + tick * interval
            tally.lateness.append(max(0.0, time.monotonic() - scheduled))
            list(pool.map(one, nodes))
            tick += 1
            time.sleep(max(0.0, tally.start + tick * interval - time.monotonic()))


async def run_asyncio(nodes, interval, tally):
    import ssl

    import aiohttp
    contexts, tokens = {}, {}

    def context(node):
        path = node.verify_tls
        if path not in contexts:
            contexts[path] = ssl.create_default_context(cafile=path or None)
        return contexts[path]

    async def poll(http, node):
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        if node.name not in tokens:
            async with http.post(f"{node.address}/redfish/v1/SessionService/Sessions",
                                 json={"UserName": node.username, "Password": node.password},
                                 ssl=context(node), timeout=timeout) as r:
                await r.read()
                tokens[node.name] = r.headers["X-Auth-Token"]
        async with http.get(f"{node.address}/redfish/v1/Systems/1", ssl=context(node),
                            headers={"X-Auth-Token": tokens[node.name]}, timeout=timeout) as r:
            return (await r.json())["PowerState"]

    async def one(http, node):
        async with bound:
            if time.monotonic() > tally.until:
                return
            await counted(http, node)

    async def counted(http, node):
        try:
            await poll(http, node)
            tally.done(node.name, True)
        except Exception:  # noqa: BLE001 - a failed poll, counted
            tally.done(node.name, False)

    bound = asyncio.Semaphore(1000)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=1, keepalive_timeout=75)
    async with aiohttp.ClientSession(connector=connector) as http:
        tick = 0
        while tally.tick():
            scheduled = tally.start + tick * interval
            tally.lateness.append(max(0.0, time.monotonic() - scheduled))
            await asyncio.gather(*(one(http, n) for n in nodes))
            tick += 1
            await asyncio.sleep(max(0.0, tally.start + tick * interval - time.monotonic()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("client", choices=["requests", "asyncio"])
    ap.add_argument("inventories", nargs="+")
    ap.add_argument("--interval", type=float, required=True)
    ap.add_argument("--warmup", type=float, required=True)
    ap.add_argument("--window", type=float, required=True)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    nodes = []
    for path in a.inventories:
        with open(path) as f:
            nodes += inventory.parse(f.read(), path)
    tally = Tally([n.name for n in nodes], a.warmup, a.window)
    if a.client == "requests":
        run_requests(nodes, a.interval, tally)
    else:
        asyncio.run(run_asyncio(nodes, a.interval, tally))
    json.dump(tally.result(), sys.stdout)


if __name__ == "__main__":
    main()
