"""One worker beside Redfish BMCs that would hold it: do healthy nodes of
both protocols keep their interval, and does the worker's memory stay put?

    python -m bench redfish-hostile [--interval 10] [--window 90] [--write-docs]

100 IPMI BMCs (lean farm-sim) and 20 healthy Redfish BMCs (farm-sim
--protocol redfish), and 8 hostile Redfish "BMCs" on loopback (HTTP servers
in this process): 4 drip every answer at 4 bytes a second, 4 send 200 MB
answers. One farm-worker with `[redfish] pool_size = 4` (the probe's) polls
them all every INTERVAL for WINDOW seconds. Reported: the longest gap
between two polls of a healthy node of each protocol, as a multiple of the
interval (after its first poll); the hostile nodes' errors; the worker's
peak RSS; what the 8 hostile servers sent; Redis's memory growth.
"""

import argparse
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis as redis_client

from bench import common, report
from bench.common import Fleet, PrivateRedis
from farm.model import Node


class Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    mode = "drip"
    sent = [0]

    def do_GET(self):  # noqa: N802 (http.server's names)
        size = 200 * 2**20 if self.mode == "huge" else 4096
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        piece, pause = (b" " * 65536, 0.0) if self.mode == "huge" else (b"    ", 1.0)
        try:
            for _ in range(size // len(piece)):
                self.wfile.write(piece)
                self.wfile.flush()
                Hostile.sent[0] += len(piece)
                if pause:
                    time.sleep(pause)
        except OSError:
            return

    do_POST = do_GET

    def log_message(self, *args):
        pass


def hostile_servers(count, mode):
    servers = []
    for _ in range(count):
        handler = type(f"Hostile{mode}", (Hostile,), {"mode": mode})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    return servers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--window", type=float, default=90)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-redfish-hostile-")
    ipmi = Fleet(100, 0.0, work)
    redfish = Fleet(20, 0.0, work, sim_args=("--protocol", "redfish", "--session-timeout", "3600"))
    servers = hostile_servers(4, "drip") + hostile_servers(4, "huge")
    hostile = [Node(f"hostile-{i}", f"http://127.0.0.1:{s.server_address[1]}", 0, "root", "pw",
                    driver="redfish") for i, s in enumerate(servers)]
    healthy = {"ipmi": [n.name for n in ipmi.nodes], "redfish": [n.name for n in redfish.nodes]}
    proc = None
    try:
        with PrivateRedis(work) as redis:
            store = redis.store
            store.import_nodes(ipmi.nodes + redfish.nodes + hostile)
            raw = redis_client.Redis(port=redis.port)
            conf = common.farm_conf(os.path.join(work, "farm.conf"), redis.url, "threads",
                                    a.interval, 5, 1024)
            with open(conf, "a") as f:
                f.write("[redfish]\npool_size = 4\n")
            proc = common.start("worker", conf, work)
            seen = {n: [] for names in healthy.values() for n in names}
            started, rss, memory0 = time.monotonic(), 0, None
            while time.monotonic() - started < a.window + a.interval:
                states = store.node_states(list(seen))
                for name, s in states.items():
                    at = float(s.get("polled_at") or 0)
                    if at and (not seen[name] or seen[name][-1] != at):
                        seen[name].append(at)
                rss = max(rss, common.proc_memory(proc.pid)[0])
                if memory0 is None and time.monotonic() - started > a.interval:
                    memory0 = raw.info("memory")["used_memory"]
                time.sleep(0.25)
            errors = {n: s.get("last_error", "")[:60] for n, s in
                      store.node_states([n.name for n in hostile]).items()}
            memory1 = raw.info("memory")["used_memory"]
    finally:
        if proc is not None:
            common.stop([proc])
        for s in servers:
            s.shutdown()
        ipmi.stop()
        redfish.stop()
    rows = []
    for protocol, names in healthy.items():
        gaps = [b - a_ for n in names for a_, b in zip(seen[n], seen[n][1:], strict=False)]
        never = sum(1 for n in names if not seen[n])
        rows.append([f"healthy {protocol} nodes ({len(names)}): longest gap between polls / "
                     f"interval, never polled",
                     f"{max(gaps) / a.interval:.2f}x, {never}" if gaps else f"none, {never}"])
    kinds = sorted({e.split(":")[0] + ":" + e.split(":")[1][:30] if ":" in e else e
                    for e in errors.values()})
    rows += [["hostile nodes' last errors", "; ".join(kinds)],
             ["worker peak RSS (MB)", f"{rss / 2**20:.0f}"],
             ["bytes the 8 hostile servers sent (MB)", f"{Hostile.sent[0] / 2**20:.1f}"],
             ["Redis used_memory growth over the window (MB)",
              f"{(memory1 - (memory0 or memory1)) / 2**20:.2f}"]]
    report.publish("redfish-hostile", [f"one worker, [redfish] pool_size 4, interval {a.interval:g} s, "
                          f"{a.window:g} s", "measured"],
                   rows, work, a.write_docs)


if __name__ == "__main__":
    main()
