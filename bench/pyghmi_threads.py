"""Stress pyghmi from a thread pool, with and without farm's fixes.

    python -m bench.pyghmi_threads --threads 32 --bmcs 200 --hung 0.1 --rounds 20
    FARM_PYGHMI_FIXES=0 python -m bench.pyghmi_threads ...   # stock pyghmi

Starts its own farm-sim, prints one JSON line: latency percentiles, the worst
poll, polls over the deadline, healthy polls that failed, and wall time.
"""

import argparse
import collections
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, wait

from bench.common import Fleet
from farm import errors
from farm.bmc.ipmi import IpmiClient


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--bmcs", type=int, default=200)
    ap.add_argument("--hung", type=float, default=0.1)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--deadline", type=float, default=1.0)
    ap.add_argument("--give-up-after", type=float, default=120.0)
    a = ap.parse_args()
    fleet = Fleet(a.bmcs, a.hung, tempfile.mkdtemp())
    try:
        nodes = fleet.nodes
        hung = {i for i, n in enumerate(nodes) if n.name in fleet.hung}
        client = IpmiClient(timeout=a.deadline, session_idle_max=3600)
        lat, over, bad = [], 0, 0
        kinds = collections.Counter()

        def poll(i):
            t = time.monotonic()
            try:
                client.get_power_state(nodes[i])
                ok = True
            except errors.BmcError as exc:
                ok = False
                if i not in hung:
                    kinds[f"{exc.kind}: {str(exc)[:60]}"] += 1
            return i, ok, time.monotonic() - t

        start = time.monotonic()
        rounds_done, stuck = 0, 0
        pool = ThreadPoolExecutor(a.threads)
        for _ in range(a.rounds):
            futures = [pool.submit(poll, i) for i in range(a.bmcs)]
            # A deadlocked pool never finishes a round: count what is stuck.
            done, not_done = wait(futures, timeout=max(30.0, a.deadline * a.bmcs / a.threads * 3))
            for f in done:
                i, ok, took = f.result()
                lat.append(took)
                over += took > a.deadline + 0.5
                bad += (i not in hung) and not ok
            stuck = len(not_done)
            rounds_done += 1
            if stuck or time.monotonic() - start > a.give_up_after:
                break
        lat.sort()
        lat = lat or [float("nan")]
        print(json.dumps({
            "fixes": os.environ.get("FARM_PYGHMI_FIXES", "all"),
            "threads": a.threads, "bmcs": a.bmcs, "hung": len(hung), "rounds": rounds_done,
            "p50_ms": round(lat[len(lat) // 2] * 1000, 2),
            "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2),
            "worst_s": round(lat[-1], 3), "over_deadline": over, "healthy_failed": bad,
            "stuck_polls": stuck, "healthy_errors": dict(kinds.most_common(3)),
            "wall_s": round(time.monotonic() - start, 2)}), flush=True)
        if stuck:
            os._exit(1)  # the stuck threads never return; do not wait for them
    finally:
        fleet.stop()


if __name__ == "__main__":
    main()
