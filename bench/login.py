"""What negotiation costs a login: packets and wall time of a first poll.

    python -m bench login [--count 20] [--rounds 5] [--write-docs]

COUNT OpenIPMI ipmi_sim BMCs (which refuse suite 17 and accept 3) and COUNT
farm-sim lean BMCs (which accept 17), each polled by farm's poll engine:

1. first poll, farm's defaults (suites 17 then 3): the packets sent per poll
   and the time until every BMC answered;
2. the same with the suite forced (`cipher_suites = 3` for ipmi_sim): what a
   setting found by `farm probe` saves;
3. a later poll on the kept session: one packet;
4. a first poll by a new engine that was handed what the BMCs accepted before
   (the worker does this from Redis after a restart): no refusal.

Packets are counted by the engine itself (`packets_sent`); a poll without
negotiation is 5 packets (Open Session, RAKP 1, RAKP 3, Set Session
Privilege Level, Get Chassis Status). Each case runs ROUNDS times on fresh
engines; the table gives the median.
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

from bench import report
from farm.bmc.engine import SESSION_HINT, Engine, EngineConfig
from farm.model import Node
from farm.sim import openipmi
from farm.sim.ports import free_udp_range
from farm.tasks.power import PowerPoll

USER, PASSWORD = "admin", "bench-Pw-1"


def first_polls(nodes, config, hints=None, again=False):
    """(packets per poll, seconds until all answered) of one round."""
    done, box = threading.Event(), []

    def collect(outcomes):
        box.extend(o for o in outcomes if o.task == "power")
        if len(box) >= len(nodes):
            done.set()
    engine = Engine(config, PowerPoll.programs, collect).start()
    try:
        if hints:
            engine.submit([(SESSION_HINT, n, hints) for n in nodes])
        if again:  # a first round, then measure the second on kept sessions
            engine.submit([("power", n) for n in nodes])
            done.wait(30)
            box.clear()
            done.clear()
        before = engine.stats["packets_sent"]
        start = time.monotonic()
        engine.submit([("power", n) for n in nodes])
        done.wait(30)
        took = time.monotonic() - start
        failed = [o for o in box if not o.ok]
        if failed or len(box) < len(nodes):
            raise SystemExit(f"bench login: polls failed: {failed[:3]}")
        return (engine.stats["packets_sent"] - before) / len(nodes), took
    finally:
        engine.stop()


def median_of(rounds, fn):
    runs = [fn() for _ in range(rounds)]
    return statistics.median(p for p, _ in runs), statistics.median(t for _, t in runs)


def main():
    parser = argparse.ArgumentParser(prog="python -m bench login")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-login-")
    base = free_udp_range(args.count)
    bmcs = openipmi.started(tmp, range(base, base + args.count), USER, PASSWORD)
    lean_base = free_udp_range(args.count)
    from farm.sim.lean import LeanFleet
    fleet = LeanFleet(args.count, "127.0.0.1", lean_base, USER, PASSWORD)
    stop = threading.Event()
    threading.Thread(target=fleet.serve, args=(stop,), daemon=True).start()
    try:
        isim = [Node(f"i{k}", "127.0.0.1", b.port, USER, PASSWORD) for k, b in enumerate(bmcs)]
        lean = [Node(f"l{k}", "127.0.0.1", lean_base + k, USER, PASSWORD)
                for k in range(args.count)]
        defaults = EngineConfig(timeout=5.0)
        rows = []
        for label, nodes, suite in (("ipmi_sim (refuses 17)", isim, 3),
                                    ("farm-sim lean (accepts 17)", lean, 17)):
            cases = [("first poll, defaults (17, 3)", defaults, None, False),
                     ("first poll, suite set on the node", EngineConfig(
                         timeout=5.0, cipher_suites=(suite,)), None, False),
                     ("later poll, kept session", defaults, None, True),
                     ("first poll after a restart (suite from Redis)", defaults,
                      (suite, 4), False)]
            for case, config, hints, again in cases:
                packets, took = median_of(args.rounds, lambda c=config, h=hints, a=again, n=nodes:
                                          first_polls(n, c, h, a))
                rows.append((label, case, f"{packets:g}", f"{packets - (1 if again else 5):+g}",
                             f"{took * 1000:.1f}"))
                print(rows[-1], file=sys.stderr)
        text = report.table(("BMCs", "case", "packets per poll", "beyond a plain login",
                             f"ms until all {args.count} answered"), rows)
        print(text)
        if args.write_docs:
            report.section("login", text)
    finally:
        stop.set()
        fleet.close()
        for b in bmcs:
            b.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
