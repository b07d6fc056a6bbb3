"""What one sensors pass costs in each Redfish shape, beside an IPMI pass.

    python -m bench redfish-gets [--passes 200] [--count 100] [--write-docs]

1. In this process, one RedfishBmc (farm's client) against one BMC, after
   two passes (the login and the plan): GETs and bytes received per pass
   (counted by a requests response hook) and client CPU per pass, over
   PASSES passes in a row, for:
   - farm-sim in the deprecated shape (Thermal and Power);
   - farm-sim in the current shape with $expand, and without;
   - DMTF's Redfish-Mockup-Server over DMTF's public-liquid-cooled-server
     (tests/fixtures/redfish-dmtf), with $expand and without (the service
     root's ExpandQuery taken out of a copy).
2. The whole worker, the sensors task alone on COUNT BMCs every 2 s, for
   the three farm-sim shapes and IPMI (the lean simulator): client CPU per
   pass in a steady window, which includes what a pass costs besides the
   BMC (Redis writes, events).
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from bench import common, report
from bench.common import Fleet
from bench.tasks import measure
from farm.bmc.redfish import RedfishBmc

DMTF = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "redfish-dmtf"
SHAPES = {"deprecated (Thermal, Power)": ("--redfish-shape", "deprecated"),
          "current, $expand": ("--redfish-shape", "current", "--redfish-expand", "on"),
          "current, no $expand": ("--redfish-shape", "current", "--redfish-expand", "off")}


class Counted:
    def __init__(self):
        self.gets = self.bytes = 0

    def __call__(self, response):
        if response.request.method == "GET":
            self.gets += 1
        self.bytes += len(response.content or b"")


def passes(node, count):
    seen = Counted()
    bmc = RedfishBmc(node, 10.0, on_response=seen)
    try:
        bmc.sensors()
        readings, _ = bmc.sensors()
        gets, size, cpu = seen.gets, seen.bytes, time.process_time()
        for _ in range(count):
            bmc.sensors()
        cpu = time.process_time() - cpu
    finally:
        bmc.close()
    return {"readings": len(readings), "gets": (seen.gets - gets) / count,
            "bytes": round((seen.bytes - size) / count), "cpu_ms": round(1000 * cpu / count, 3)}


def sim_node(work, args):
    port = common.free_tcp_range(1, "127.0.0.1")
    inv = os.path.join(work, f"one-{port}.yaml")
    proc = subprocess.Popen([os.path.join(common.BIN, "farm-sim"), "--protocol", "redfish",
                             "--count", "1", "--base-port", str(port), "--inventory", inv,
                             "--session-timeout", "3600", *args],
                            env=dict(os.environ, FARM_SIM_PASSWORD=common.PASSWORD),
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not os.path.exists(inv):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("farm-sim did not start")
        time.sleep(0.05)
    from farm.fleet import inventory
    with open(inv) as f:
        (node,) = inventory.parse(f.read(), inv)
    return proc, node


def dmtf_node(work, expand):
    from farm.model import Node
    mockup = DMTF / "mockups" / "public-liquid-cooled-server"
    if not expand:
        copy = pathlib.Path(work) / "liquid-no-expand"
        if not copy.exists():
            shutil.copytree(mockup, copy)
            root = json.loads((copy / "index.json").read_text())
            root.get("ProtocolFeaturesSupported", {}).pop("ExpandQuery", None)
            (copy / "index.json").write_text(json.dumps(root))
        mockup = copy
    port = common.free_tcp_range(1, "127.0.0.1")
    proc = subprocess.Popen([sys.executable, str(DMTF / "redfishMockupServer.py"), "-S", "-H",
                             "127.0.0.1", "-p", str(port), "-D", str(mockup)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import requests
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/redfish/v1/", timeout=1).ok:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the mockup server did not start")
        time.sleep(0.1)
    return proc, Node("dmtf", f"http://127.0.0.1:{port}", 0, "u", "p", driver="redfish")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--passes", type=int, default=200)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="farm-redfish-gets-")
    one = {}
    for name, args in SHAPES.items():
        proc, node = sim_node(work, args)
        try:
            one[f"farm-sim, {name}"] = passes(node, a.passes)
        finally:
            common.stop([proc])
    for expand in (True, False):
        proc, node = dmtf_node(work, expand)
        try:
            one[f"DMTF liquid-cooled, {'$expand' if expand else 'no $expand'}"] = \
                passes(node, a.passes)
        finally:
            common.stop([proc])
    worker = {}
    fleets = {f"Redfish, {k}": ("--protocol", "redfish", "--session-timeout", "3600", *v)
              for k, v in SHAPES.items()}
    fleets["IPMI"] = ()
    for name, args in fleets.items():
        fleet = Fleet(a.count, 0.0, work, sim_args=(*args, "--sensor-period", "600"))
        try:
            r = measure(fleet, work, {"sensors": a.interval}, 2 * a.interval + 5, a.window)
        finally:
            fleet.stop()
        n = r["passes"]["sensors"]
        worker[name] = {"passes": n, "failed": r["failed"],
                        "cpu_ms": round(1000 * r["cpu_s"] / n, 3) if n else None,
                        "packets": round(r["packets"] / n, 1) if n else None}
        print(json.dumps({"scenario": name, **worker[name]}), file=sys.stderr)
    text = report.table(
        [f"one sensors pass, {a.passes} in a row", "readings", "GETs per pass",
         "bytes received per pass", "client CPU ms per pass"],
        [[k, r["readings"], r["gets"], r["bytes"], r["cpu_ms"]] for k, r in one.items()])
    text += "\n\n" + report.table(
        [f"farm-worker, sensors alone, {a.count} BMCs every {a.interval:g} s",
         "client CPU ms per pass", "IPMI packets sent per pass", "passes in window", "failed"],
        [[k, r["cpu_ms"], r["packets"] if k == "IPMI" else "", r["passes"], r["failed"]]
         for k, r in worker.items()])
    ipmi = worker["IPMI"]["cpu_ms"]
    text += "\n\nA worker's sensors pass, against its IPMI pass: " + ", ".join(
        f"{k} {r['cpu_ms'] / ipmi:.1f}x" for k, r in worker.items() if k != "IPMI" and ipmi) + ".\n"
    print(text)
    print(f"work directory: {work}", file=sys.stderr)
    if a.write_docs:
        report.section("redfish-gets", text)


if __name__ == "__main__":
    main()
