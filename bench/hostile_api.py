"""farm-api while the adversarial probe's clients run: does /ipmi stay fast,
and does every hostile request get its 4xx at once?

    python -m bench api-hostile [--count 10000] [--duration 15] [--write-docs]

COUNT nodes in a private Redis (what a worker stores, as `bench ipmi`), one
farm-api with its defaults. wrk scrapes /ipmi?target=<a random node> over 4
kept connections for DURATION seconds, alone and then while these run:
- 300 slowloris connections (half a request, reopened when farm-api closes
  them after [api] header_timeout);
- 4 clients announcing 50 MB POST bodies without a token, one after another;
- 4 clients asking for catastrophic regexes and ten-term range selections;
- 50 long polls (`/v1/events?wait=30`);
- 20 clients asking for /v1/targets and never reading it.
Reported: /ipmi's rate and p50/p99 alone and under attack, each hostile
request's time to its answer (p50/p99/max, by kind), and farm-api's RSS.
"""

import argparse
import socket
import tempfile
import threading
import time
from urllib.parse import urlparse

import redis as redis_client

from bench import common, report
from bench.common import PrivateRedis, percentile
from bench.ipmi import api_conf, reader_token, start_api, store_fleet, wrk


class Attack:
    """The hostile clients, each kind on its own threads, until stop."""

    def __init__(self, url, token, last_event):
        u = urlparse(url)
        self.last_event = last_event
        self.addr, self.token = (u.hostname, u.port), token
        self.stop = threading.Event()
        self.times = {}  # kind -> [seconds to the answer]
        self.lock = threading.Lock()
        self.threads = []

    def _note(self, kind, seconds):
        with self.lock:
            self.times.setdefault(kind, []).append(seconds)

    def _ask(self, kind, request, read_answer=True):
        started = time.monotonic()
        try:
            with socket.create_connection(self.addr, timeout=40) as s:
                s.sendall(request)
                if read_answer:
                    head = s.recv(65536)
                    if head.startswith(b"HTTP/1.1 4") or kind.startswith("long poll"):
                        self._note(kind, time.monotonic() - started)
                    else:
                        self._note(kind + " (not 4xx)", time.monotonic() - started)
        except OSError:
            self._note(kind + " (error)", time.monotonic() - started)

    def _loop(self, fn):
        while not self.stop.is_set():
            fn()

    def _slowloris(self):
        socks = []
        while not self.stop.is_set():
            while len(socks) < 300:
                try:
                    s = socket.create_connection(self.addr, timeout=5)
                    s.sendall(b"GET /v1/nodes HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    s.setblocking(False)
                    socks.append(s)
                except OSError:
                    break
            alive = []
            for s in socks:
                try:
                    if s.recv(1) == b"":
                        s.close()
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    s.close()
                    continue
                alive.append(s)
            socks = alive
            self.stop.wait(0.5)
        for s in socks:
            s.close()

    def _unread_targets(self):
        socks = []
        auth = f"Authorization: Bearer {self.token}\r\n".encode()
        for _ in range(20):
            s = socket.create_connection(self.addr, timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /v1/targets HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
            socks.append(s)
        self.stop.wait()
        for s in socks:
            s.close()

    def start(self):
        auth = f"Authorization: Bearer {self.token}\r\n".encode()
        big = (b"POST /v1/power-actions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 52428800\r\n\r\n" + b"{" * 65536)
        regex = (b"GET /v1/nodes?select=t26%3D~(a%2B)%2B%24 HTTP/1.1\r\nHost: x\r\n" + auth
                 + b"\r\n")
        ranges = ("GET /v1/nodes?select=" + "%2C".join(f"n{k}x%5B0-99999%5D" for k in range(10))
                  + " HTTP/1.1\r\nHost: x\r\n").encode() + auth + b"\r\n"
        since = (f"GET /v1/events?since={self.last_event}&wait=30 HTTP/1.1\r\nHost: x\r\n"
                 .encode() + auth + b"\r\n")
        kinds = [(lambda: self._ask("50 MB body, no token", big), 4),
                 (lambda: self._ask("catastrophic regex", regex), 2),
                 (lambda: self._ask("ten-term ranges", ranges), 2),
                 (lambda: self._ask("long poll (held 30 s)", since), 50)]
        for fn, n in kinds:
            for _ in range(n):
                self.threads.append(threading.Thread(target=self._loop, args=(fn,), daemon=True))
        self.threads.append(threading.Thread(target=self._slowloris, daemon=True))
        self.threads.append(threading.Thread(target=self._unread_targets, daemon=True))
        for t in self.threads:
            t.start()

    def end(self):
        self.stop.set()
        for t in self.threads:
            t.join(45)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-api-hostile-")
    with PrivateRedis(work) as redis:
        names = store_fleet(redis.store, a.count, 0.1)
        tokens, token = reader_token(work)
        proc, url = start_api(api_conf(work, redis.url, tokens, 300), work)
        try:
            wrk(url, "/ipmi?module=default&target=", names, work, 3, 4, token)  # warm up
            rss0 = common.proc_memory(proc.pid)[0]
            alone = wrk(url, "/ipmi?module=default&target=", names, work, a.duration, 4, token)
            last = redis_client.Redis(port=redis.port).xrevrange("bench:events", count=1)
            attack = Attack(url, token, last[0][0].decode() if last else "0-0")
            attack.start()
            time.sleep(3)  # the attack under way (its clients connected) before measuring
            under = wrk(url, "/ipmi?module=default&target=", names, work, a.duration, 4, token)
            rss1 = common.proc_memory(proc.pid)[0]
            attack.end()
        finally:
            proc.terminate()
            proc.wait(30)
    rows = [["/ipmi alone: scrapes/s, p50 / p99 (ms)",
             f"{alone[0]:,.0f}, {alone[1][50]:.1f} / {alone[1][99]:.1f}"],
            ["/ipmi under attack: scrapes/s, p50 / p99 (ms), failed",
             f"{under[0]:,.0f}, {under[1][50]:.1f} / {under[1][99]:.1f}, {under[3]}"],
            ["farm-api RSS before / under attack (MB)", f"{rss0 / 2**20:.0f} / {rss1 / 2**20:.0f}"]]
    for kind, times in sorted(attack.times.items()):
        times.sort()
        rows.append([f"{kind}: answers, time to the answer p50 / p99 / max (ms)",
                     f"{len(times)}, {percentile(times, 0.5) * 1000:.1f} / "
                     f"{percentile(times, 0.99) * 1000:.1f} / {times[-1] * 1000:.1f}"])
    report.publish("api-hostile", [f"farm-api, {a.count:,} nodes, under the probe's clients", "measured"],
                   rows, work, a.write_docs)



if __name__ == "__main__":
    main()
