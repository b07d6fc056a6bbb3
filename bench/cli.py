"""The operator's commands at fleet size: wall time of `farm status`,
`farm nodes summary` and `farm nodes list` over COUNT nodes, each polled once,
and `farm nodes list SELECTION` by a name range and by labels.

    python -m bench cli [--count 100000] [--repeats 3] [--write-docs]

A private Redis gets COUNT nodes (plaintext test credentials) and one poll
result each but for 1 % never polled (1 % failing, 20 % off), written through farm's own result
script; then each command runs as a real process, REPEATS times, and the
median wall time (process start included) is reported. No worker runs:
`farm status` then reads the node count and no tallies (a live farm adds
one small report per worker).

Before the commands, the results are written twice more (the steady state:
nodes known, states mostly unchanged) and Redis's own CPU time (INFO cpu)
over those writes gives what farm's result script costs the server per
result, counts and poll index included.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import redis as redis_client

from bench import common, report
from bench.common import BIN, PrivateRedis, median
from farm.model import Node, PollResult, PowerState

COMMANDS = [("farm status --json", ["status", "--json"]),
            ("farm nodes summary", ["nodes", "summary"]),
            ("farm nodes list --json (its first page: 1,000 nodes)", ["nodes", "list", "--json"]),
            ("farm nodes list --stale --json (1,000 never polled)",
             ["nodes", "list", "--stale", "--json"]),
            # selections: the name index alone, then the label index too
            ("farm nodes list 'node-0[10000-10999]' --json (a range: 1,000 names)",
             ["nodes", "list", "node-0[10000-10999]", "--json"]),
            ("farm nodes list rack=r0042 --json (a label: 100 nodes)",
             ["nodes", "list", "rack=r0042", "--json"]),
            ("farm nodes list 'all,-role=compute@rack=~r00[0-4].' --json --limit 10",
             ["nodes", "list", "all,-role=compute@rack=~r00[0-4].", "--json", "--limit", "10"])]


def write_all(store, nodes):
    """One result per node (1 % failing, 20 % off; 1 % never polled), as
    workers write them."""
    now = time.time()
    for i in range(0, len(nodes), 2000):
        store.write_results([PollResult(n.name, now, 0.01,
                                        None if j % 100 == 0 else
                                        (PowerState.OFF if j % 5 == 0 else PowerState.ON),
                                        "timeout" if j % 100 == 0 else None,
                                        "no answer" if j % 100 == 0 else None)
                             for j, n in enumerate(nodes[i:i + 2000], start=i) if j % 100 != 50])


def redis_cpu(url):
    """The Redis server's CPU seconds so far (user + system)."""
    info = redis_client.Redis.from_url(url).info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-cli-")
    with PrivateRedis(work) as redis:
        store = redis.store
        # labels as a datacenter has them: 100 nodes a rack, two PDUs a rack
        nodes = [Node(f"node-{i:06d}", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 623,
                      "admin", "bench-password",
                      labels=(("pdu", f"r{i // 100:04d}-{'ab'[i % 2]}"), ("rack", f"r{i // 100:04d}"),
                              ("role", "compute" if i % 10 else "storage")))
                 for i in range(a.count)]
        store.import_nodes(nodes)
        write_all(store, nodes)  # the first results: every state is new
        cpu = redis_cpu(redis.url)
        for _ in range(2):
            write_all(store, nodes)
        per_result = (redis_cpu(redis.url) - cpu) / (2 * a.count * 0.99)
        conf = common.farm_conf(os.path.join(work, "farm.conf"), redis.url, "threads", 60, 5, 1024)
        rows = []
        for label, args in COMMANDS:
            times = []
            for _ in range(a.repeats):
                t = time.monotonic()
                out = subprocess.run([os.path.join(BIN, "farm"), *args, "--config-file", conf],
                                     capture_output=True, text=True, timeout=600)
                times.append(time.monotonic() - t)
                if out.returncode != 0:
                    raise RuntimeError(f"{label} failed: {out.stderr[-500:]}")
            rows.append([label, round(median(times), 2)])
            print(label, [round(t, 2) for t in times], file=sys.stderr)
    table = report.table(["command", f"wall time, {a.count:,} nodes (s, median of {a.repeats})"], rows)
    table += (f"\n\nRedis CPU per poll result written (steady state, batches of 2,000): "
              f"{per_result * 1e6:.1f} µs.")
    print(table)
    if a.write_docs:
        report.section("cli", table)


if __name__ == "__main__":
    main()
