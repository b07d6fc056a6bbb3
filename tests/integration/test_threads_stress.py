"""The threads path stays stall-free: 32 threads, 200 BMCs (10 % hung), 20 rounds.

Stock pyghmi deadlocked here (lock-order inversion) and stalled on lost
wake-ups; see farm/bmc/pyghmi_fixes.py. Every poll must end by its deadline
plus a small slack, and every healthy BMC must answer in every round.
"""

import time
from concurrent.futures import ThreadPoolExecutor

from farm import errors
from farm.bmc.ipmi import IpmiClient
from farm.model import Node

DEADLINE = 1.0
SLACK = 0.5


def poll(client, node):
    started = time.monotonic()
    try:
        client.get_power_state(node)
        outcome = "ok"
    except errors.BmcError as exc:
        outcome = exc.kind
    return node.name, outcome, time.monotonic() - started


def test_32_threads_200_bmcs_20_rounds(make_sim):
    sim = make_sim(200, hung_fraction=0.1)
    nodes = [Node(f"n{i}", "127.0.0.1", sim.port(i), sim.username, sim.password)
             for i in range(200)]
    hung = {f"n{i}" for i in range(200)
            if i in __import__("farm.sim.fleet", fromlist=["pick"]).pick(200, 0.1, 0)}
    client = IpmiClient(timeout=DEADLINE, session_idle_max=60)
    worst, failures = 0.0, []
    with ThreadPoolExecutor(32) as pool:
        for round_no in range(20):
            for name, outcome, took in pool.map(lambda n: poll(client, n), nodes):
                worst = max(worst, took)
                if (name in hung) != (outcome != "ok"):
                    failures.append((round_no, name, outcome, round(took, 2)))
    client.close()
    assert worst <= DEADLINE + SLACK, f"a poll took {worst:.2f}s"
    assert not failures, failures[:10]


def test_without_the_sendto_fix_threads_stall():
    """The fix is needed: stock pyghmi's blocking flip stalls the same load.
    If this starts failing, pyghmi fixed it upstream and the patch can go."""
    import json
    import os
    import subprocess
    import sys
    env = dict(os.environ, FARM_PYGHMI_FIXES="locks,wakeups")
    out = subprocess.run([sys.executable, "-m", "bench.pyghmi_threads", "--rounds", "10",
                          "--give-up-after", "60"],
                         env=env, capture_output=True, text=True, timeout=240,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert out.returncode == 0 and out.stdout.strip(), out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["healthy_failed"] + report["over_deadline"] + report["stuck_polls"] > 0, report
